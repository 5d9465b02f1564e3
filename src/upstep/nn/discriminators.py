"""Discriminators for the co-learning recipe, and their hinge losses.

Inputs are pixels NCHW in [-1, 1]. Every discriminator returns a *list* of logit maps (one per
head; a single-head network returns a one-element list), so one pair of loss functions serves
them all.

* ``ProjectedDiscriminator`` (D_H, on HR images): StyleGAN-T's design — a feature network
  and several lightweight heads that read its features at different depths, each judging
  patches at its own scale. StyleGAN-T freezes a pretrained DINO feature network; none is
  available offline here, so the feature network is a small strided-conv stack trained
  jointly with the heads (spectral norm on every convolution keeps it Lipschitz-bounded,
  the role the frozen network's fixed features play in StyleGAN-T).
* ``PatchDiscriminator`` (D_L, on LR images): a small PatchGAN.

Hinge losses (StyleGAN-T, co-learning eq. 3-6), averaged over heads and positions::

    L_D = E[relu(1 - D(real))] + E[relu(1 + D(fake))]       (discriminator)
    L_G = -E[D(fake)]                                        (generator side)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn_conv(cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | None = None) -> nn.Module:
    return spectral_norm(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding))


class DiscHead(nn.Module):
    """A lightweight head: 3x3 conv + LeakyReLU + 1x1 conv to one logit per position."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(sn_conv(channels, channels, 3), nn.LeakyReLU(0.2),
                                 sn_conv(channels, 1, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class ProjectedDiscriminator(nn.Module):
    """D_H: feature network of strided conv stages, one head per stage (``heads`` deepest ones)."""

    def __init__(self, in_channels: int = 3, channels=(32, 64, 128), heads: int | None = None):
        super().__init__()
        channels = list(channels)
        stages, cin = [], in_channels
        for c in channels:
            stages.append(nn.Sequential(sn_conv(cin, c, 4, 2, 1), nn.LeakyReLU(0.2),
                                        sn_conv(c, c, 3), nn.LeakyReLU(0.2)))
            cin = c
        self.stages = nn.ModuleList(stages)
        n_heads = len(channels) if heads is None else heads
        self.head_from = len(channels) - n_heads  # index of the first stage with a head
        self.heads = nn.ModuleList(DiscHead(c) for c in channels[self.head_from:])
        self._config = {"in_channels": in_channels, "channels": channels, "heads": n_heads}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        logits = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i >= self.head_from:
                logits.append(self.heads[i - self.head_from](x))
        return logits

    def config(self) -> dict:
        return dict(self._config)


class PatchDiscriminator(nn.Module):
    """D_L: conv + ``n_down`` strided convs + a 1-channel conv (a logit per LR patch)."""

    def __init__(self, in_channels: int = 3, channels: int = 32, n_down: int = 2):
        super().__init__()
        layers: list[nn.Module] = [sn_conv(in_channels, channels, 3), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(n_down):
            layers += [sn_conv(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2)]
            c *= 2
        layers.append(sn_conv(c, 1, 3))
        self.net = nn.Sequential(*layers)
        self._config = {"in_channels": in_channels, "channels": channels, "n_down": n_down}

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.net(x)]

    def config(self) -> dict:
        return dict(self._config)


def d_hinge_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Discriminator hinge loss, mean over heads: relu(1 - D(real)) + relu(1 + D(fake))."""
    terms = [F.relu(1 - r.float()).mean() + F.relu(1 + f.float()).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def g_hinge_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Generator-side hinge loss, mean over heads: -D(fake)."""
    return torch.stack([-f.float().mean() for f in fake]).mean()


def build_discriminator(kind: str, config: dict | None = None) -> nn.Module:
    cfg = dict(config or {})
    if kind == "projected":
        return ProjectedDiscriminator(**cfg)
    if kind == "patch":
        return PatchDiscriminator(**cfg)
    raise ValueError(f"unknown discriminator {kind!r}: use 'projected' or 'patch'")
