"""Degradations that turn HR images into LR ones (NCHW float tensors in [0, 1]).

Pipelines (``degrade(hr, scale, pipeline)``):

* ``bicubic``: MATLAB ``imresize`` bicubic, the classical benchmark degradation;
* ``avgpool``: average of each ``scale`` x ``scale`` block (YONOS-SR §4.2);
* ``realesrgan``: Real-ESRGAN's random second-order degradation (:mod:`upstep.degrade.realesrgan`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from upstep.degrade.resize import imresize


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, like an LR image saved to disk."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def _crop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def bicubic(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` on HR cropped to a multiple of ``scale``."""
    return quantize(imresize(_crop(hr, scale), 1.0 / scale))


def avgpool(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mean of each ``scale`` x ``scale`` block (average pooling, YONOS-SR §4.2), on HR cropped to
    a multiple of ``scale``, rounded to 8-bit levels."""
    x = _crop(hr, scale)
    squeeze = x.ndim == 3
    lr = F.avg_pool2d(x[None] if squeeze else x, kernel_size=scale, stride=scale)
    lr = quantize(lr)
    return lr[0] if squeeze else lr


def _realesrgan(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Real-ESRGAN second-order degradation with the paper's ranges (imported lazily: kornia)."""
    from upstep.degrade.realesrgan import realesrgan

    return realesrgan(hr, scale, generator=generator)


# name -> fn(hr, scale, generator=None) -> lr
pipelines = {"bicubic": bicubic, "avgpool": avgpool, "realesrgan": _realesrgan}


def degrade(hr: torch.Tensor, scale: int, pipeline: str = "bicubic",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The front door the training recipes use: HR [0,1] -> LR [0,1] with ``pipeline``."""
    if pipeline not in pipelines:
        raise ValueError(f"unknown degradation pipeline {pipeline!r}; known: {sorted(pipelines)}")
    return pipelines[pipeline](hr, scale, generator=generator)


__all__ = ["imresize", "bicubic", "avgpool", "degrade", "pipelines", "quantize"]
