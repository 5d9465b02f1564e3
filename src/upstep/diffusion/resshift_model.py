"""A ResShift SR model (teacher, or its one-step student) with the same outward interface as
``upstep.model.SRDiffusionModel``, so ``upstep upscale``, ``upstep.load`` and the tiled
pipeline run it unchanged.

Tensor conventions: pixels NCHW in [-1, 1]; ``lr`` at LR size. The LR image is bicubically
upscaled to the HR size and encoded: that latent is ``y`` (ResShift's condition and the mean
the forward process shifts towards). The U-Net input is concat(x_t / sqrt(kappa^2 eta_t + 1), y)
(ResShift's input normalisation); its time input is ``t_index / T`` in (0, 1]; it predicts x_0
either directly (``x0_param = "direct"``, the papers' form) or as ``y + output``
(``"residual"``: an untrained network then returns the bicubic upscale, the CPU-scale choice
measured in DESIGN.md for the v-diffusion models).

``upscale_tensor(lr, steps, noise)``: ``noise`` is the eps of x_T = y + kappa sqrt(eta_T) eps.
``steps = 1`` is the one-step student (x0 = net(x_T, y, T)); ``steps = T`` (15) runs the
teacher's deterministic sampler; any 1 <= steps <= T runs it on an evenly spread sub-grid.
"""
from __future__ import annotations

import torch
from torch import nn

from upstep.diffusion.resshift import ResShiftSchedule, ddim_sample
from upstep.errors import UpstepError
from upstep.model import FORMAT_VERSION, LatentSRModel
from upstep.nn.autoencoders import Autoencoder, build_autoencoder
from upstep.nn.unet import SRUNet, build_unet


class ResShiftSRModel(LatentSRModel):
    kind = "resshift"

    def __init__(self, autoencoder: Autoencoder, unet: SRUNet, scale: int,
                 schedule: ResShiftSchedule | None = None, default_steps: int = 15,
                 x0_param: str = "direct", normalize_input: bool = True):
        super().__init__()
        if x0_param not in ("direct", "residual"):
            raise ValueError(f"x0_param must be 'direct' or 'residual', got {x0_param!r}")
        self.autoencoder = autoencoder
        self.unet = unet
        self.scale = int(scale)
        self.schedule = schedule or ResShiftSchedule()
        self.default_steps = int(default_steps)
        self.x0_param = x0_param
        self.normalize_input = normalize_input
        self.schedule.timesteps(self.default_steps)  # validates 1 <= default_steps <= T

    # ---- the denoiser ------------------------------------------------------------------
    def predict_x0(self, x_t: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                   unet: nn.Module | None = None) -> torch.Tensor:
        """x0_hat(x_t, y, t) with ``t`` an integer (batch,) tensor in 1..T. ``unet`` lets a
        recipe pass its accelerate-wrapped copy of ``self.unet``."""
        net = self.unet if unet is None else unet  # not `unet or`: a wrapper may define __len__
        x_in = x_t * self.schedule.input_scale(t, x_t) if self.normalize_input else x_t
        out = net(x_in, y, t.to(x_t.dtype) / self.schedule.T).to(x_t.dtype)
        return y + out if self.x0_param == "residual" else out

    def prior(self, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.schedule.prior_sample(y, noise)

    def sample_latent(self, y: torch.Tensor, noise: torch.Tensor, steps: int | None = None,
                      unet: nn.Module | None = None) -> torch.Tensor:
        """Deterministic sampling from x_T = y + kappa sqrt(eta_T) noise; returns x_0.
        Differentiable (the co-learning student's one-step output needs gradients): callers
        that only infer wrap it in ``torch.no_grad``."""
        return ddim_sample(lambda x, c, t: self.predict_x0(x, c, t, unet), self.prior(y, noise), y,
                           self.schedule, steps or self.default_steps)

    @torch.no_grad()
    def upscale_upsampled(self, lr_up: torch.Tensor, steps: int | None = None,
                          noise: torch.Tensor | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        steps = steps or self.default_steps
        if not 1 <= steps <= self.schedule.T:
            raise UpstepError(f"this ResShift model samples with 1..{self.schedule.T} steps, got {steps}")
        y = self.encode_cond(lr_up)
        if noise is None:
            noise = torch.randn(self.latent_shape(lr_up), generator=generator).to(lr_up.device, y.dtype)
        return self.autoencoder.decode(self.sample_latent(y, noise.to(y.dtype), steps))

    # ---- serialisation (same JSON layout as SRDiffusionModel.config) -------------------
    def config(self) -> dict:
        return {"kind": self.kind, "format_version": FORMAT_VERSION, "scale": self.scale,
                "default_steps": self.default_steps,
                "resshift": {**self.schedule.config(), "x0_param": self.x0_param,
                             "normalize_input": self.normalize_input},
                "autoencoder": self.autoencoder.config(), "unet": self.unet.config()}

    @classmethod
    def from_config(cls, cfg: dict, autoencoder: Autoencoder | None = None,
                    unet: SRUNet | None = None) -> "ResShiftSRModel":
        """``autoencoder``/``unet``: already built networks (e.g. pretrained) used instead of
        the config's ``autoencoder``/``unet`` sections."""
        rs = dict(cfg.get("resshift", {}))
        x0_param = rs.pop("x0_param", "direct")
        normalize_input = rs.pop("normalize_input", True)
        autoencoder = build_autoencoder(cfg["autoencoder"]) if autoencoder is None else autoencoder
        unet = build_unet(cfg["unet"]) if unet is None else unet
        return cls(autoencoder, unet, cfg["scale"],
                   schedule=ResShiftSchedule(**rs), default_steps=cfg.get("default_steps", 15),
                   x0_param=x0_param, normalize_input=normalize_input)
