"""Differentiable augmentation for discriminators (DiffAugment, Zhao et al. 2020, policy
"color,translation,cutout"), as Projected GAN and StyleGAN-T use it.

Images are NCHW in [-1, 1]; every operation is differentiable in the image, and real and fake
batches are augmented independently (each draws its own parameters), exactly as the
discriminator then sees them. Per image:

* colour: brightness ``x + (u - 0.5)``, saturation ``(x - mean_c) * 2u + mean_c``, contrast
  ``(x - mean_chw) * (u + 0.5) + mean_chw``, u ~ U[0, 1];
* translation: an integer shift of up to 1/8 of the size in each direction, zero padded;
* cutout: a zeroed square of half the size at a random position (clipped at the border).

Random numbers come from ``generator`` (a CPU ``torch.Generator``, or torch's global one).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _rand(n: int, g, device, *shape) -> torch.Tensor:
    return torch.rand((n, *shape), generator=g).to(device)


def colour(x: torch.Tensor, g=None) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + (_rand(n, g, dev, 1, 1, 1) - 0.5)
    m = x.mean(1, keepdim=True)
    x = (x - m) * (_rand(n, g, dev, 1, 1, 1) * 2) + m
    m = x.mean((1, 2, 3), keepdim=True)
    return (x - m) * (_rand(n, g, dev, 1, 1, 1) + 0.5) + m


def translation(x: torch.Tensor, g=None, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = torch.randint(-sh, sh + 1, (n, 1, 1), generator=g).to(x.device)
    tx = torch.randint(-sw, sw + 1, (n, 1, 1), generator=g).to(x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    gy = (gy[None] + ty + 1).clamp(0, h + 1)      # +1: index into the 1-pixel zero padding
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1))
    idx = (gy * (w + 2) + gx).flatten(1)          # (n, h*w) into the padded image
    out = padded.flatten(2).gather(2, idx[:, None].expand(-1, x.shape[1], -1))
    return out.view_as(x)


def cutout(x: torch.Tensor, g=None, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g).to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g).to(x.device)
    gy = torch.arange(h, device=x.device).view(1, h, 1)
    gx = torch.arange(w, device=x.device).view(1, 1, w)
    y0, x0 = cy - ch // 2, cx - cw // 2
    inside = (gy >= y0) & (gy < y0 + ch) & (gx >= x0) & (gx < x0 + cw)
    return x * (~inside)[:, None].to(x.dtype)


_OPS = {"color": colour, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy=POLICIES, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply the ``policy`` operations in order (an empty policy returns ``x``)."""
    for name in policy:
        if name not in _OPS:
            raise ValueError(f"unknown DiffAugment operation {name!r}; known: {sorted(_OPS)}")
        x = _OPS[name](x, generator)
    return x
