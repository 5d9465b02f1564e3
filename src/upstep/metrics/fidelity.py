"""Full-reference fidelity metrics in the SR field's convention."""
from __future__ import annotations

import torch


def to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma as MATLAB ``rgb2ycbcr`` (range [16, 235]/255) of NCHW RGB in [0, 1]."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def _prep(sr, hr, crop_border, y_channel):
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if y_channel:
        sr, hr = to_y(sr), to_y(hr)
    if crop_border:
        c = crop_border
        sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
    return sr.double(), hr.double()


def psnr(sr: torch.Tensor, hr: torch.Tensor, *, crop_border: int = 0, y_channel: bool = True) -> torch.Tensor:
    """Per-image PSNR in dB (data range 1); ``inf`` for identical images."""
    sr, hr = _prep(sr, hr, crop_border, y_channel)
    mse = (sr - hr).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)
