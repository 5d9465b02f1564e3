"""LDL: the locally discriminative artifact loss (Liang, Zeng and Zhang, "Details or Artifacts: A
Locally Discriminative Learning Approach to Realistic Image Super-Resolution", CVPR 2022).

A GAN-trained SR model adds two kinds of high frequency: realistic detail and artifacts (grain on
flat areas, false edges). LDL tells them apart per pixel and penalises only the artifacts. With the
residual R = sum_c |y - x_hat| (images in [0, 1]):

    M   = var(R)^(1/5) * var_7x7(R)      (Eq. 5-7: a global scale times the local variance)
    M'  = M where R >= R_ema, else 0     (Eq. 8: R_ema is the EMA model's residual; the map keeps
                                          the pixels where the current model is no closer to y)

    L_LDL = mean |M' (y - x_hat)|        (Eq. 9; M' is a constant, no gradient)

The EMA model is the stable reference: where it is closer to y than the current model, the
current model's extra high frequency is unstable, so treated as an artifact. LPIPS-alex is never
part of this; it stays the evaluation metric.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def local_variance(x: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Unbiased variance of ``x`` (N1HW) over each ``window`` x ``window`` neighbourhood
    (reflect-padded, so the output is HxW)."""
    pad = window // 2
    p = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    n = window * window
    mean = F.avg_pool2d(p, window, stride=1)
    mean_sq = F.avg_pool2d(p * p, window, stride=1)
    return ((mean_sq - mean * mean) * (n / (n - 1))).clamp_min(0)


@torch.no_grad()
def artifact_map(target01: torch.Tensor, sr01: torch.Tensor, sr_ema01: torch.Tensor,
                 window: int = 7) -> torch.Tensor:
    """M' (N1HW): LDL's refined artifact map for images in [0, 1]; zero wherever the EMA model's
    output is further from the target than the current one's."""
    residual = (target01 - sr01).abs().sum(1, keepdim=True)
    residual_ema = (target01 - sr_ema01).abs().sum(1, keepdim=True)
    global_scale = residual.var(dim=(1, 2, 3), keepdim=True) ** 0.2
    m = global_scale * local_variance(residual, window)
    return torch.where(residual < residual_ema, torch.zeros_like(m), m)


def ldl_loss(target01: torch.Tensor, sr01: torch.Tensor, sr_ema01: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Eq. 9: the L1 distance weighted by the (constant) artifact map."""
    m = artifact_map(target01, sr01.detach(), sr_ema01, window)
    return (m * (target01 - sr01)).abs().mean()
