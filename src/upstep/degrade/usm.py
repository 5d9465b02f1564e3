"""Unsharp-mask (USM) sharpening of training targets, as Real-ESRGAN does it.

Real-ESRGAN (Wang et al. 2021, §4.1 and its released training code) sharpens the ground truth
before training: the L1 and perceptual losses compare the output with USM(GT), the LR is
degraded from USM(GT), and only the discriminator sees the plain GT. With ``r`` the residual
against a wide Gaussian blur,

    r = x - G_σ * x;   m = G_σ * [ |r| · 255 > threshold ];   USM(x) = m · clip(x + w·r) + (1 - m) · x

so edges with more than ``threshold`` 8-bit levels of local contrast get ``w`` more of it and
flat areas (where noise would be amplified) are left alone. The reference's defaults are
w = 0.5, a 51-pixel window (radius 50, made odd), σ = 8 (OpenCV's σ for that window).
"""
from __future__ import annotations

import torch


def _blur_matrix(n: int, size: int, sigma: float) -> torch.Tensor:
    """(n, n) matrix M with (M @ v) = v convolved with the ``size``-tap Gaussian, reflected borders
    (index -1 -> 1, n -> n - 2, as OpenCV's BORDER_REFLECT_101), folded back as often as needed."""
    r = size // 2
    t = torch.arange(size, dtype=torch.float64) - r
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    rows = torch.arange(n).repeat_interleave(size)
    cols = (torch.arange(n)[:, None] + t.long()[None]).reshape(-1)
    period = max(2 * n - 2, 1)
    cols = cols % period
    cols = torch.where(cols >= n, period - cols, cols)
    m = torch.zeros(n, n, dtype=torch.float64)
    m.index_put_((rows, cols), k.repeat(n), accumulate=True)
    return m


def gaussian_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with a ``size``-tap window and reflected borders,
    as two matrix products (fast on CPU for wide windows, where a 1-channel convolution is not)."""
    h, w = x.shape[-2:]
    mh = _blur_matrix(h, size, sigma).to(x.device, x.dtype)
    mw = _blur_matrix(w, size, sigma).to(x.device, x.dtype)
    return mh @ x @ mw.T


def usm_sharpen(x: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10.0) -> torch.Tensor:
    """USM of ``x`` (N, C, H, W) in [0, 1] (module docstring). Deterministic: no random numbers."""
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8          # OpenCV's sigma for a window of ``size``
    residual = x - gaussian_blur(x, size, sigma)
    mask = gaussian_blur((residual.abs() * 255 > threshold).to(x.dtype), size, sigma)
    sharp = (x + weight * residual).clamp(0, 1)
    return mask * sharp + (1 - mask) * x


__all__ = ["usm_sharpen"]
