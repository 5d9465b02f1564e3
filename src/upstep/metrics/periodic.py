"""How much of an image's detail is periodic on the latent grid (checkerboard artifacts).

A pixel-unshuffle latent of factor p ties each channel to one position of a p x p cell, so a
bias in the latent shows as a p-periodic pattern, whose spectrum is concentrated on the grid
frequencies (i H/p, j W/p), (i, j) != (0, 0). ``grid_energy`` is the fraction of the non-DC
spectral energy (luma) that sits there; a natural photo has little (it is compared with the HR
image's own fraction, not with zero).
"""
from __future__ import annotations

import torch


def grid_energy(x: torch.Tensor, period: int = 4) -> torch.Tensor:
    """x: NCHW (or CHW) with H, W multiples of ``period``; one fraction in [0, 1] per image."""
    x = x[None] if x.ndim == 3 else x
    h, w = x.shape[-2:]
    if h % period or w % period:
        raise ValueError(f"image {h}x{w}: H and W must be multiples of the period {period}")
    y = x.float().mean(1) if x.shape[1] != 3 else (x.float() * torch.tensor(
        [0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1)
    power = torch.fft.fft2(y - y.mean((-2, -1), keepdim=True)).abs().pow(2)
    grid = power[:, :: h // period, :: w // period]          # the period x period grid frequencies
    return grid.flatten(1).sum(1) / power.flatten(1).sum(1).clamp_min(1e-20)
