"""ResShift teacher training (Yue et al. 2023) in the latent space of the autoencoder.

For an HR crop: synthesise the LR with the configured degradation, upscale it bicubically to
the HR size, encode both:  x_0 = E(HR),  y = E(bicubic(LR)).  Then

    t ~ U{1..T},  eps ~ N(0, I)
    x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps          (ResShift eq. 1 marginal)
    L   = || f_theta(x_t, y, t) - x_0 ||^2                          (x_0 prediction, MSE)

The exported model samples with the deterministic 15-step sampler by default (the mapping
the co-learning student distils); ``upscale_tensor(..., steps=1)`` is its one-step output.
The helpers ``build_resshift_model``, and ``encode_pair`` are shared
with the co-learning recipe.
"""
from __future__ import annotations

import copy

import torch

from upstep.diffusion.resshift import sample_timesteps
from upstep.diffusion.resshift_model import ResShiftSRModel
from upstep.model import load_model
from upstep.recipes.base import Recipe, make_lr, validate_models


def build_resshift_model(cfg: dict) -> ResShiftSRModel:
    """A fresh ResShift model from the ``model`` section, or ``model.init_from``: an upstep
    ResShift model folder; an upstep v-diffusion model (folder or shipped name, e.g.
    "fidelity-x4"), whose autoencoder and U-Net (same inputs: the noisy latent and the LR
    latent, concatenated) warm-start the ResShift model, the ``resshift`` settings coming from
    the config; or a diffusers folder (e.g. Stable Diffusion: its VAE and its U-Net widened for y
    with zero weights, ``upstep.init_from``) — the SD-size teacher of ``configs/gpu/``."""
    mcfg = cfg["model"]
    if mcfg.get("init_from"):
        from upstep.init_from import is_diffusers_folder, load_diffusers_init

        if is_diffusers_folder(mcfg["init_from"]):
            ae, unet = load_diffusers_init(mcfg["init_from"])
            return ResShiftSRModel.from_config(_full_config(cfg), autoencoder=ae, unet=unet)
        from upstep.api import resolve_model
        from upstep.model import SRDiffusionModel

        model = load_model(resolve_model(mcfg["init_from"]))
        if isinstance(model, SRDiffusionModel):
            return ResShiftSRModel.from_config(_full_config(cfg), autoencoder=model.autoencoder, unet=model.unet)
        if not isinstance(model, ResShiftSRModel):
            raise ValueError(f"{mcfg['init_from']}: not a ResShift or v-diffusion model (kind {model.kind!r})")
        return model
    return ResShiftSRModel.from_config(_full_config(cfg))


def _full_config(cfg: dict) -> dict:
    full = {"kind": "resshift", "scale": cfg["data"]["scale"], **cfg["model"]}
    full.setdefault("default_steps", full.get("resshift", {}).get("T", 15))
    return full


@torch.no_grad()
def encode_pair(model: ResShiftSRModel, hr01: torch.Tensor, degradation: str, g: torch.Generator):
    """HR [0,1] -> (x_0, y, hr, lr): latents of HR and of the bicubic-upsampled LR, and the
    HR / LR pixels in [-1, 1] (LR at its own size)."""
    lr01 = make_lr(hr01.cpu(), model.scale, degradation, g).to(hr01.device)
    hr, lr = hr01 * 2 - 1, lr01 * 2 - 1
    lr_up = model.upsample_lr(lr, hr01.shape[-2:])
    return model.autoencoder.encode(hr), model.encode_cond(lr_up), hr, lr




class ResShiftTeacherRecipe(Recipe):
    ema_names = ("unet",)

    def __init__(self, cfg: dict, accelerator):
        super().__init__(cfg, accelerator)
        self.model = build_resshift_model(cfg).to(accelerator.device)
        self.model.autoencoder.requires_grad_(False).eval()
        self.degradation = cfg["data"].get("degradation", "bicubic")
        self.trainable = {"unet": self.model.unet}
        tcfg = cfg["train"]
        self.optimizers = {"unet": torch.optim.AdamW(self.model.unet.parameters(), lr=tcfg["lr"],
                                                     weight_decay=tcfg.get("weight_decay", 0.0))}

    def train_step(self, step: int, hr01: torch.Tensor, g: torch.Generator) -> dict[str, float]:
        sched = self.model.schedule
        x0, y, _, _ = encode_pair(self.model, hr01, self.degradation, g)
        t = sample_timesteps(x0.shape[0], sched.T, g, self.cfg["train"].get("p_terminal", 0.0)).to(x0.device)
        eps = torch.randn(x0.shape, generator=g).to(x0.device)
        x_t = sched.q_sample(x0, y, t, eps)
        with self.accelerator.autocast():
            x0_hat = self.model.predict_x0(x_t, y, t, unet=self.wrapped["unet"])
        loss = (x0_hat.float() - x0).pow(2).mean()
        self.backward_step(loss, "unet", "unet")
        return {"loss": loss.item()}

    def export(self) -> ResShiftSRModel:
        out = copy.deepcopy(self.model).cpu()
        out.unet.load_state_dict(self.emas["unet"].state_dict())
        return out.eval()

    def validate(self, hr01: torch.Tensor) -> dict[str, float]:
        m = self.export().to(hr01.device)
        return validate_models({"val_psnr": (m, m.default_steps), "val_psnr_1step": (m, 1)},
                                 hr01, self.degradation)
