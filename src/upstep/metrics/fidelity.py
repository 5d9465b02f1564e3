"""Full-reference fidelity metrics in the SR field's convention.

Inputs NCHW float in [0, 1]; outputs one value per image. ``y_channel`` measures the ITU-R
BT.601 luma of MATLAB's ``rgb2ycbcr`` (the classical SR tables); ``crop_border`` drops that
many pixels on each side (the field crops ``scale`` pixels). Benchmarks quantise outputs to
uint8 levels first (``quantize``), as saved images would be.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from upstep.degrade import quantize  # noqa: F401  (re-exported: metrics measure uint8 outputs)


def to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma as MATLAB ``rgb2ycbcr`` (range [16, 235]/255) of NCHW RGB in [0, 1]."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def to_y_fullrange(x: torch.Tensor) -> torch.Tensor:
    """Full-range BT.601 luma (the Y of YIQ, 0.299 R + 0.587 G + 0.114 B) rounded to uint8
    levels: the convention of pyiqa, whose published scores the calibration set carries."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return torch.round((0.299 * r + 0.587 * g + 0.114 * b) * 255) / 255


LUMA = {"ycbcr": to_y, "yiq": to_y_fullrange}


def _prep(sr, hr, crop_border, y_channel):
    """``y_channel``: True / "ycbcr" (SR tables), "yiq" (pyiqa), False (all channels)."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: {tuple(sr.shape)} vs {tuple(hr.shape)}")
    if y_channel:
        luma = LUMA["ycbcr" if y_channel is True else y_channel]
        sr, hr = luma(sr), luma(hr)
    if crop_border:
        c = crop_border
        sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
    return sr.double(), hr.double()


def psnr(sr: torch.Tensor, hr: torch.Tensor, *, crop_border: int = 0, y_channel: bool | str = True) -> torch.Tensor:
    """Per-image PSNR in dB (data range 1); ``inf`` for identical images."""
    sr, hr = _prep(sr, hr, crop_border, y_channel)
    mse = (sr - hr).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def _gauss_1d(size: int = 11, sigma: float = 1.5, dtype=torch.float64) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Valid 2-D Gaussian filtering as two 1-D passes (the window is separable: g g^T)."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _ssim_maps(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0):
    """Wang et al. 2004 SSIM: 11x11 Gaussian window (sigma 1.5), K1 0.01, K2 0.03, valid conv."""
    g = _gauss_1d(dtype=x.dtype).to(x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _filter(x, g), _filter(y, g)
    sxx = _filter(x * x, g) - mu_x**2
    syy = _filter(y * y, g) - mu_y**2
    sxy = _filter(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim_map, cs


def ssim(sr: torch.Tensor, hr: torch.Tensor, *, crop_border: int = 0, y_channel: bool | str = True) -> torch.Tensor:
    """Per-image SSIM (mean over the valid map; over channels for RGB), as BasicSR/MATLAB."""
    sr, hr = _prep(sr, hr, crop_border, y_channel)
    ssim_map, _ = _ssim_maps(sr * 255, hr * 255, 255.0)
    return ssim_map.flatten(1).mean(1)


MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim(sr: torch.Tensor, hr: torch.Tensor, *, crop_border: int = 0, y_channel: bool | str = True) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003): 5 scales, 2x2 average pooling between
    them, contrast-structure at scales 1-4 and full SSIM at 5, standard weights. Images whose
    short side is below 11 * 2^4 = 176 px cannot fit 5 scales: NaN is returned for them."""
    sr, hr = _prep(sr, hr, crop_border, y_channel)
    if min(sr.shape[-2:]) < 11 * 2 ** (len(MS_WEIGHTS) - 1):
        return torch.full((sr.shape[0],), float("nan"), dtype=torch.float64)
    x, y = sr * 255, hr * 255
    vals = []
    for i in range(len(MS_WEIGHTS)):
        ssim_map, cs = _ssim_maps(x, y, 255.0)
        last = i == len(MS_WEIGHTS) - 1
        vals.append((ssim_map if last else cs).flatten(2).mean(2).clamp_min(0))  # N, C
        if not last:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    w = torch.tensor(MS_WEIGHTS, dtype=x.dtype)
    out = torch.stack(vals, 0) ** w[:, None, None]
    return out.prod(0).mean(1)
