"""Colour correction of an SR output against its bicubic-upscaled LR (StableSR-style).

Both take NCHW tensors in the same range and return ``sr`` with the colour of ``ref``.
* ``adain``: per-channel mean and std of ``sr`` matched to ``ref`` (AdaIN, Huang & Belongie 2017).
* ``wavelet``: keep ``sr``'s high frequencies, take the low frequencies from ``ref``; the low
  band is ``levels`` rounds of a dilated 3x3 binomial blur (à trous wavelet decomposition).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def adain(sr: torch.Tensor, ref: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    m_s, s_s = sr.mean((2, 3), keepdim=True), sr.std((2, 3), keepdim=True)
    m_r, s_r = ref.mean((2, 3), keepdim=True), ref.std((2, 3), keepdim=True)
    return (sr - m_s) / (s_s + eps) * s_r + m_r


def _low_pass(x: torch.Tensor, levels: int) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    k = (k[:, None] * k[None, :]) / 16.0
    k = k.expand(x.shape[1], 1, 3, 3)
    for i in range(levels):
        d = 2**i
        pad_mode = "reflect" if min(x.shape[-2:]) > d else "replicate"
        x = F.conv2d(F.pad(x, (d, d, d, d), mode=pad_mode), k, dilation=d, groups=x.shape[1])
    return x


def wavelet(sr: torch.Tensor, ref: torch.Tensor, levels: int = 5) -> torch.Tensor:
    return sr - _low_pass(sr, levels) + _low_pass(ref, levels)


COLORFIX = {"none": None, "adain": adain, "wavelet": wavelet}
