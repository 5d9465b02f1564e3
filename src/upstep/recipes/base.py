"""What every recipe shares: building the SR model from config, the LR synthesis, validation."""
from __future__ import annotations

import torch
from torch import nn

from upstep.degrade import degrade
from upstep.errors import ConfigError
from upstep.model import SRDiffusionModel, load_model


def build_sr_model(cfg: dict) -> SRDiffusionModel:
    """A fresh model from the ``model`` section, or one loaded from ``model.init_from`` (an upstep
    model folder or the name of a shipped model, e.g. ``"default-x4"``, or a diffusers folder with ``vae/`` and ``unet/``: see ``upstep.init_from``).

    ``model.autoencoder = {"from": FOLDER, "scaling": c}`` takes a trained autoencoder (the first
    stage of latent diffusion, e.g. from the ``autoencoder`` recipe) out of the upstep model in
    FOLDER, with its latents multiplied by ``c`` (optional; the folder's own scaling otherwise),
    and builds a fresh U-Net around it from the rest of the section."""
    mcfg = cfg["model"]
    if mcfg.get("init_from"):
        from upstep.init_from import build_from_diffusers, is_diffusers_folder

        if is_diffusers_folder(mcfg["init_from"]):
            return build_from_diffusers(mcfg["init_from"], cfg["data"]["scale"],
                                        target=mcfg.get("target", "latent"),
                                        default_steps=mcfg.get("default_steps", 1),
                                        omega_max=mcfg.get("schedule", {}).get("omega_max", 1000.0))
        from upstep.api import resolve_model

        model = load_model(resolve_model(mcfg["init_from"]))   # a model folder or a shipped name
        # The LR enters bicubically upsampled to HR size, so the networks do not depend on the
        # scale: a model of another scale is a warm start (YONOS Alg. 1 initialises each scale
        # from the previous one). `scale` is what the exported model says.
        model.scale = int(cfg["data"]["scale"])
        return model
    ae_cfg = mcfg.get("autoencoder", {})
    trained_ae = _trained_autoencoder(ae_cfg) if "from" in ae_cfg else None
    if trained_ae is not None:
        mcfg = {**mcfg, "autoencoder": trained_ae.config()}
    model = SRDiffusionModel.from_config({"kind": "vdiffusion", "scale": cfg["data"]["scale"], **mcfg})
    if trained_ae is not None:
        model.autoencoder = trained_ae   # same architecture (its own config), trained weights
    return model


def _trained_autoencoder(ae_cfg: dict):
    unknown = set(ae_cfg) - {"from", "scaling"}
    if unknown:
        raise ConfigError(f"model.autoencoder with `from` takes only `scaling` besides it; remove {sorted(unknown)} "
                          "(the architecture comes from the trained model)")
    ae = load_model(ae_cfg["from"]).autoencoder
    if "scaling" in ae_cfg:
        ae.scaling = float(ae_cfg["scaling"])
    return ae


def make_lr(hr01: torch.Tensor, scale: int, pipeline: str, generator: torch.Generator) -> torch.Tensor:
    """HR [0,1] -> LR [0,1] with the configured degradation (seeded)."""
    return degrade(hr01, scale, pipeline, generator=generator)


def make_pair(hr01: torch.Tensor, scale: int, pipeline: str, generator: torch.Generator):
    """HR [0,1] -> (target, LR) in [0,1]: the target is the HR except where the degradation makes
    a camera-like pair (``upstep.degrade.pair_pipelines``)."""
    return degrade(hr01, scale, pipeline, generator=generator, with_target=True)


@torch.no_grad()
def validate_models(models: dict[str, tuple[nn.Module, int]], hr01: torch.Tensor,
                    degradation: str) -> dict[str, float]:
    """PSNR-Y (border = scale, uint8 outputs) of each ``name -> (model, steps)`` and of bicubic,
    on held-apart crops degraded with ``degradation`` (fixed seeds: the same LR and the same
    noise for every model and every validation). Outputs are compared with the degradation's
    target: the HR crops, or their softened version where it makes camera-like pairs."""
    from upstep.metrics import psnr, quantize

    any_model = next(iter(models.values()))[0]
    s = any_model.scale
    target, lr = make_pair(hr01.cpu(), s, degradation, torch.Generator().manual_seed(12345))
    hr01, lr = target.to(hr01.device), lr.to(hr01.device)
    out = {}
    for name, (model, steps) in models.items():
        was_training = model.training
        model.eval()
        g = torch.Generator().manual_seed(54321)
        sr = (model.upscale_tensor(lr * 2 - 1, steps=steps, generator=g) + 1) / 2
        model.train(was_training)
        out[name] = float(psnr(quantize(sr), hr01, crop_border=s).mean())
    bic = (any_model.upsample_lr(lr * 2 - 1) + 1) / 2
    out["val_psnr_bicubic"] = float(psnr(quantize(bic), hr01, crop_border=s).mean())
    return out


class Recipe:
    """Subclasses set ``trainable`` (name -> module), ``optimizers``, ``ema_names`` and
    implement ``train_step``. The loop fills ``wrapped`` (accelerate-prepared modules) and
    ``emas``."""

    trainable: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    ema_names: tuple[str, ...] = ()
    trains_on_pair_targets = False  # True: trains on make_pair's target (camera_pair allowed)
    latent_cache = None  # the loop sets an upstep.train.latent_cache.LatentCache with train.latent_cache

    def __init__(self, cfg: dict, accelerator):
        self.cfg = cfg
        self.accelerator = accelerator
        self.wrapped: dict[str, nn.Module] = {}
        self.emas: dict = {}

    def frozen_latents(self, hr01: torch.Tensor, g: torch.Generator):
        """Every frozen-encoder latent one training step computes for the crops ``hr01`` (what
        ``upstep train --fill-latent-cache`` precomputes); recipes with a latent cache override it."""
        raise ConfigError(f"the {self.cfg.get('recipe')!r} recipe has no frozen-encoder latents to cache")

    def encode_frozen(self, autoencoder: nn.Module, x: torch.Tensor, fn=None) -> torch.Tensor:
        """``fn(x)`` (default ``autoencoder.encode``; or a model's ``encode_cond``) with a frozen
        ``autoencoder``, through the latent cache if any."""
        fn = fn or autoencoder.encode
        if self.latent_cache is None:
            return fn(x)
        return self.latent_cache.encode(autoencoder, x, fn)

    def backward_step(self, loss: torch.Tensor, opt_name: str, module_name: str) -> None:
        opt = self.optimizers[opt_name]
        opt.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        clip = self.cfg["train"].get("grad_clip")
        if clip:
            self.accelerator.clip_grad_norm_(self.wrapped[module_name].parameters(), clip)
        opt.step()

    def validate_model(self, model: SRDiffusionModel, hr01: torch.Tensor) -> dict[str, float]:
        """1-step PSNR-Y (border = scale) of ``model`` and of bicubic on held-apart crops."""
        return validate_models({"val_psnr": (model, 1)}, hr01, "bicubic")
