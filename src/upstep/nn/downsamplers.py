"""Learnable downsamplers G (co-learning §III): HR -> an LR image, trained jointly with the SR
student so that its LR looks like real LR to D_L.

Output of both variants: LR pixels NCHW in [-1, 1] at 1/scale of the HR size (the space of
the real LR images D_L sees).

* ``ConvDownsampler`` reads HR *pixels*: ``log2(scale)`` stride-2 conv stages. Its output is
  ``area_downsample(x) + residual(x)`` with the residual's last conv zero-initialised, so an
  untrained G is plain area downsampling and training learns the degradation on top.
* ``DiffusionDownsampler`` is the paper's diffusion-based G: a network with the student's
  architecture (``SRUNet``) that takes concat(eps', x0_hat) — a fresh Gaussian ``eps'`` in the
  noisy-latent slot, the HR latent as the condition, time fixed at t = 1 — and predicts, in one
  step, the latent of the (bicubic-upsampled) LR image, i.e. the space of ResShift's ``y``.
  The prediction is ``x0_hat + output`` (zero-initialised output: an untrained G maps an HR
  latent to itself). ``to_lr_pixels`` decodes it and bicubic-downsamples by ``scale`` (the
  exact inverse shape of how ``y`` is made), so both Gs feed D_L the same kind of tensor.
  The noise makes G stochastic: one HR crop yields many plausible LR images.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from upstep.degrade.resize import imresize
from upstep.nn.unet import SRUNet, build_unet


class ConvDownsampler(nn.Module):
    input_space = "pixels"

    def __init__(self, scale: int = 4, in_channels: int = 3, channels: int = 32):
        super().__init__()
        n = int(round(math.log2(scale)))
        if 2**n != scale:
            raise ValueError(f"ConvDownsampler needs a power-of-two scale, got {scale}")
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, 1, 1), nn.LeakyReLU(0.2)]
        for _ in range(n):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU(0.2)]
        out = nn.Conv2d(channels, in_channels, 3, 1, 1)
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        layers.append(out)
        self.residual = nn.Sequential(*layers)
        self._config = {"scale": scale, "in_channels": in_channels, "channels": channels}

    def forward(self, hr: torch.Tensor) -> torch.Tensor:
        """HR pixels [-1, 1] -> LR pixels."""
        return F.avg_pool2d(hr, self.scale) + self.residual(hr)

    def config(self) -> dict:
        return dict(self._config)


class DiffusionDownsampler(nn.Module):
    input_space = "latent"

    def __init__(self, unet: dict | SRUNet):
        super().__init__()
        if isinstance(unet, dict):
            unet = build_unet({**unet, "zero_init_out": True})
        self.unet = unet

    @property
    def latent_channels(self) -> int:
        return self.unet.latent_channels

    def forward(self, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """HR latent x0 and noise eps' -> predicted LR latent (the space of y); one step at t = 1."""
        t = torch.ones(x0.shape[0], device=x0.device, dtype=x0.dtype)
        return x0 + self.unet(eps.to(x0.dtype), x0, t).to(x0.dtype)

    @staticmethod
    def to_lr_pixels(y_hat: torch.Tensor, decode: Callable[[torch.Tensor], torch.Tensor],
                     scale: int) -> torch.Tensor:
        """LR latent -> upsampled-LR pixels -> LR pixels (bicubic, 1/scale)."""
        return imresize(decode(y_hat), scale=1.0 / scale)

    def config(self) -> dict:
        return {"unet": self.unet.config()}


def build_downsampler(kind: str, config: dict) -> nn.Module:
    if kind == "conv":
        return ConvDownsampler(**config)
    if kind == "diffusion":
        return DiffusionDownsampler(config["unet"])
    raise ValueError(f"unknown downsampler {kind!r}: use 'conv' or 'diffusion'")
