"""Degradations that turn HR images into LR ones (NCHW float tensors in [0, 1])."""
from __future__ import annotations

import torch

from upstep.degrade.resize import imresize


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, like an LR image saved to disk."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def bicubic(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` on HR cropped to a multiple of ``scale``."""
    h, w = hr.shape[-2:]
    hr = hr[..., : h - h % scale, : w - w % scale]
    return quantize(imresize(hr, 1.0 / scale))


def degrade(hr: torch.Tensor, scale: int, pipeline: str = "bicubic",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The front door the training recipes use: HR [0,1] -> LR [0,1] with ``pipeline``."""
    pipelines = {"bicubic": bicubic}
    if pipeline not in pipelines:
        raise ValueError(f"unknown degradation pipeline {pipeline!r}; known: {sorted(pipelines)}")
    return pipelines[pipeline](hr, scale, generator=generator)


__all__ = ["imresize", "bicubic", "degrade", "quantize"]
