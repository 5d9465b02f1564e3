"""Training recipes, one file per method. ``build_recipe`` maps a config's ``recipe`` name to
its class; the imports are explicit so the list of methods is readable here."""
from __future__ import annotations

from upstep.errors import ConfigError


def build_recipe(cfg: dict, accelerator):
    from upstep.recipes.autoencoder import AutoencoderRecipe
    from upstep.recipes.colearn import CoLearnRecipe
    from upstep.recipes.decoder_finetune import DecoderFinetuneRecipe
    from upstep.recipes.perceptual import PerceptualRecipe
    from upstep.recipes.resshift_teacher import ResShiftTeacherRecipe
    from upstep.recipes.scale_distill import ScaleDistillRecipe
    from upstep.recipes.standard import StandardRecipe

    recipes = {"standard": StandardRecipe}
    recipes.update(resshift_teacher=ResShiftTeacherRecipe, colearn=CoLearnRecipe)
    recipes.update(scale_distill=ScaleDistillRecipe, decoder_finetune=DecoderFinetuneRecipe,
                   autoencoder=AutoencoderRecipe)  # YONOS-SR (Alg. 1, §3.3) and its KL first stage
    recipes.update(perceptual=PerceptualRecipe)  # L1 + feature + projected-GAN fine-tuning of a one-step model
    name = cfg.get("recipe")
    if name == "yonos_chain":
        raise ConfigError("a `yonos_chain` config is a list of stages: run it with `upstep train` or "
                          "upstep.recipes.scale_distill.run_chain, not as a single recipe")
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}; known: {sorted(recipes)}")
    return recipes[name](cfg, accelerator)
