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


def check_pipeline(pipeline) -> dict[str, float]:
    """``pipeline`` as ``{name: probability}``: a name is ``{name: 1}``; a dict mixes pipelines
    per image, e.g. ``{"bicubic": 0.3, "realesrgan": 0.7}`` (probabilities must sum to 1)."""
    mix = {pipeline: 1.0} if isinstance(pipeline, str) else dict(pipeline)
    unknown = sorted(set(mix) - set(pipelines))
    if unknown or not mix:
        raise ValueError(f"unknown degradation pipeline {unknown or pipeline!r}; known: {sorted(pipelines)}")
    if any(p < 0 for p in mix.values()) or abs(sum(mix.values()) - 1) > 1e-6:
        raise ValueError(f"degradation mixture {mix} must have probabilities >= 0 that sum to 1")
    return mix


def degrade(hr: torch.Tensor, scale: int, pipeline: str | dict = "bicubic",
            generator: torch.Generator | None = None) -> torch.Tensor:
    """The front door the training recipes use: HR [0,1] -> LR [0,1] with ``pipeline``: a name,
    or a ``{name: probability}`` mixture drawn per image (from ``generator``; each pipeline then
    runs once on its share of the batch)."""
    mix = check_pipeline(pipeline)
    if len(mix) == 1:
        return pipelines[next(iter(mix))](hr, scale, generator=generator)
    squeeze = hr.ndim == 3
    x = _crop(hr[None] if squeeze else hr, scale)
    names = list(mix)
    pick = torch.multinomial(torch.tensor([mix[n] for n in names], dtype=torch.float64), x.shape[0],
                             replacement=True, generator=generator)
    out = x.new_empty(x.shape[0], x.shape[1], x.shape[2] // scale, x.shape[3] // scale)
    for i, name in enumerate(names):
        idx = torch.nonzero(pick == i).flatten()
        if idx.numel():
            out[idx.to(x.device)] = pipelines[name](x[idx.to(x.device)], scale, generator=generator)
    return out[0] if squeeze else out


__all__ = ["imresize", "bicubic", "avgpool", "check_pipeline", "degrade", "pipelines", "quantize"]
