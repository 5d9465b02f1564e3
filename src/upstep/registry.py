"""Model kinds and training recipes by name: the one table the loaders read.

A model folder's ``config.json`` names its ``kind``; a training config names its ``recipe``.
``upstep.model.load_model`` and ``upstep.train.loop`` look the name up here and import the class
on first use. The tables hold module paths, not classes, so this module imports none of them and
none of them imports a loader back: ``model.py`` does not import the ResShift model (which builds on
``model.LatentSRModel``), and the training loop does not import the recipes (``scale_distill``
runs the loop for its chain). Adding a method is one line in a table below.
"""
from __future__ import annotations

import importlib

from upstep.errors import ConfigError

MODEL_KINDS = {
    "vdiffusion": "upstep.model:SRDiffusionModel",                      # v-param diffusion (YONOS-SR, default models)
    "resshift": "upstep.diffusion.resshift_model:ResShiftSRModel",      # ResShift teacher / one-step student
}

RECIPES = {
    "standard": "upstep.recipes.standard:StandardRecipe",
    "resshift_teacher": "upstep.recipes.resshift_teacher:ResShiftTeacherRecipe",
    "colearn": "upstep.recipes.colearn:CoLearnRecipe",
    "scale_distill": "upstep.recipes.scale_distill:ScaleDistillRecipe",            # YONOS-SR Alg. 1
    "decoder_finetune": "upstep.recipes.decoder_finetune:DecoderFinetuneRecipe",   # YONOS-SR §3.3
    "autoencoder": "upstep.recipes.autoencoder:AutoencoderRecipe",                 # its KL first stage
    "perceptual": "upstep.recipes.perceptual:PerceptualRecipe",  # L1 + feature + projected-GAN fine-tuning
}


def _resolve(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def model_class(kind: str) -> type | None:
    """The model class of ``kind`` (a config.json's ``kind``), or None when unknown."""
    return _resolve(MODEL_KINDS[kind]) if kind in MODEL_KINDS else None


def build_recipe(cfg: dict, accelerator):
    """The recipe object for ``cfg["recipe"]``; ConfigError names the known ones."""
    name = cfg.get("recipe")
    if name == "yonos_chain":
        raise ConfigError("a `yonos_chain` config is a list of stages: run it with `upstep train` or "
                          "upstep.recipes.scale_distill.run_chain, not as a single recipe")
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    cls = _resolve(RECIPES[name])
    from upstep.degrade import pair_names

    pairs = pair_names(cfg.get("data", {}).get("degradation", "bicubic"))
    if pairs and not getattr(cls, "trains_on_pair_targets", False):
        raise ConfigError(f"data.degradation {pairs[0]!r} changes the HR target, which the {name!r} recipe "
                          "does not train on; use it with the standard or perceptual recipe")
    return cls(cfg, accelerator)
