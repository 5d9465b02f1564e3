"""Discriminators for the co-learning recipe, and their hinge losses.

Inputs are pixels NCHW in [-1, 1]. Every discriminator returns a *list* of logit maps (one per
head; a single-head network returns a one-element list), so one pair of loss functions serves
them all.

* ``ProjectedDiscriminator`` (D_H, on HR images): StyleGAN-T's / Projected GAN's design — a
  feature network and several lightweight heads that read its features at different depths,
  each judging patches at its own scale, behind differentiable augmentation
  (``upstep.nn.diffaugment``). ``features``:
  - ``"efficientnet_lite0"``: the *frozen* ImageNet EfficientNet-Lite0 (``upstep.nn.efficientnet``;
    the network Projected GAN uses), tapped at 1/4, 1/8, 1/16, 1/32; only the heads train;
  - ``"scratch"``: a small strided-conv stack trained jointly with the heads (spectral norm on
    every convolution keeps it Lipschitz-bounded, the role the frozen network's fixed features
    play) — for the ablation, and where the wheel is not installed.
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
    """A lightweight head: 3x3 conv (to ``width`` channels, default ``channels``) + LeakyReLU +
    1x1 conv to one logit per position."""

    def __init__(self, channels: int, width: int | None = None):
        super().__init__()
        width = width or channels
        self.net = nn.Sequential(sn_conv(channels, width, 3), nn.LeakyReLU(0.2), sn_conv(width, 1, 1))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f)


class ScratchFeatures(nn.Module):
    """Strided SN-conv stages trained with the heads; one feature map per stage."""

    def __init__(self, in_channels: int, channels):
        super().__init__()
        stages, cin = [], in_channels
        for c in channels:
            stages.append(nn.Sequential(sn_conv(cin, c, 4, 2, 1), nn.LeakyReLU(0.2),
                                        sn_conv(c, c, 3), nn.LeakyReLU(0.2)))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.channels = list(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class PretrainedFeatures(nn.Module):
    """The frozen EfficientNet-Lite0 (weights are buffers: nothing here can be trained)."""

    def __init__(self, taps=None):
        super().__init__()
        from upstep.nn.efficientnet import FEATURE_TAPS, block_channels, pretrained_efficientnet_lite0

        self.net = pretrained_efficientnet_lite0(include_top=False)
        self.taps = tuple(sorted(taps or FEATURE_TAPS))
        self.channels = [block_channels(i) for i in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net.forward_features((x.float() + 1) / 2, self.taps)


class ProjectedDiscriminator(nn.Module):
    """D_H: a feature network (``features``), one head on each of its ``heads`` deepest outputs,
    DiffAugment (``augment``: a list of ``color``, ``translation``, ``cutout``) on the input."""

    def __init__(self, in_channels: int = 3, channels=(32, 64, 128), heads: int | None = None,
                 features: str = "scratch", augment=(), head_channels: int | None = None, taps=None):
        super().__init__()
        from upstep.nn.diffaugment import POLICIES

        if features == "scratch":
            self.features = ScratchFeatures(in_channels, channels)
        elif features == "efficientnet_lite0":   # ``taps``: block indices (default FEATURE_TAPS)
            if in_channels != 3:
                raise ValueError("the pretrained EfficientNet-Lite0 reads RGB: in_channels must be 3")
            self.features = PretrainedFeatures(taps)
        else:
            raise ValueError(f"unknown feature network {features!r}: use 'scratch' or 'efficientnet_lite0'")
        bad = [a for a in augment if a not in POLICIES]
        if bad:
            raise ValueError(f"unknown DiffAugment operations {bad}; known: {list(POLICIES)}")
        feat_channels = self.features.channels
        n_heads = len(feat_channels) if heads is None else heads
        self.head_from = len(feat_channels) - n_heads  # index of the first feature map with a head
        self.heads = nn.ModuleList(DiscHead(c, head_channels) for c in feat_channels[self.head_from:])
        self.augment = list(augment)
        self._config = {"in_channels": in_channels, "channels": list(channels), "heads": n_heads,
                        "features": features, "augment": self.augment, "head_channels": head_channels,
                        "taps": list(taps) if taps else None}

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        if self.augment:
            from upstep.nn.diffaugment import diff_augment

            x = diff_augment(x, self.augment, generator)
        feats = self.features(x)[self.head_from:]
        return [head(f) for head, f in zip(self.heads, feats)]

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
