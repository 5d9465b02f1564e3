"""Degradations that turn HR images into LR ones (NCHW float tensors in [0, 1]).

Pipelines (``degrade(hr, scale, pipeline)``):

* ``bicubic``: MATLAB ``imresize`` bicubic, the classical benchmark degradation;
* ``avgpool``: average of each ``scale`` x ``scale`` block (YONOS-SR §4.2);
* ``realesrgan``: Real-ESRGAN's random second-order degradation (:mod:`upstep.degrade.realesrgan`);
* ``realesrgan_mild``: the same pipeline with narrower ranges (``MILD`` there: weaker blur, noise
  and JPEG), for fidelity models that must stay close to the clean image;
* ``realesrgan_ref``: Real-ESRGAN's pipeline with the reference's hard JPEG rounding
  (``REFERENCE`` there);
* ``camera_blur``: clean but blurred LR, as real cameras give (:mod:`upstep.degrade.camera`);
* ``camera_jpeg``: ``camera_blur``'s LR saved as a JPEG of quality 70-95, as camera photos
  usually are (:mod:`upstep.degrade.camera`);
* ``camera_pair``: a camera-like *pair*: the HR target is softened as a real camera's HR is, and the
  LR is ``camera_blur`` of that target (:mod:`upstep.degrade.camera`). A pipeline that changes the
  target runs only through ``degrade(..., with_target=True)``, which returns (target, LR); a caller
  that keeps the HR as its target gets a ValueError instead of silently mismatched pairs.

A *mixture* is a dict ``{pipeline: weight}`` (e.g. ``{"realesrgan": 0.8, "bicubic": 0.2}``, a
config's ``data.degradation``): each image of the batch draws its pipeline with those
probabilities. Every pipeline consumes the same random numbers whatever the image size, so two
views of one crop at different scales degraded from the same generator state share one draw.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from upstep.degrade.resize import imresize


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8-bit levels, like an LR image saved to disk."""
    return torch.round(x.clamp(0, 1) * 255) / 255


def as_batch(hr: torch.Tensor, scale: int, name: str) -> tuple[torch.Tensor, bool]:
    """(N, C, H, W) view of ``hr`` (NCHW or CHW) cropped to a multiple of ``scale``, and whether
    the input was CHW; a ValueError naming ``name`` for other shapes or an image smaller than
    ``scale``."""
    squeeze = hr.ndim == 3
    x = hr[None] if squeeze else hr
    if x.ndim != 4:
        raise ValueError(f"{name} expects NCHW or CHW, got shape {tuple(hr.shape)}")
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f"image {tuple(hr.shape[-2:])} is smaller than the scale {scale}")
    return x[..., : h - h % scale, : w - w % scale], squeeze


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


def _realesrgan_mild(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    from upstep.degrade.realesrgan import MILD, realesrgan

    return realesrgan(hr, scale, generator=generator, config=MILD)


def _realesrgan_ref(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    from upstep.degrade.realesrgan import REFERENCE, realesrgan

    return realesrgan(hr, scale, generator=generator, config=REFERENCE)


def _camera_blur(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    from upstep.degrade.camera import camera_blur

    return camera_blur(hr, scale, generator=generator)


def _camera_jpeg(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None) -> torch.Tensor:
    from upstep.degrade.camera import camera_jpeg

    return camera_jpeg(hr, scale, generator=generator)


def _camera_pair(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None):
    from upstep.degrade.camera import camera_pair

    return camera_pair(hr, scale, generator=generator)


def libjpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each image of ``x`` (N, 3, H, W) or (3, H, W) in [0, 1] saved as a JPEG file of ``quality``
    by Pillow's libjpeg (its defaults: 4:2:0 chroma) and read back: what a camera or a photo app
    stores, for evaluation. Training uses kornia's codec instead (``realesrgan.jpeg``), which runs on
    batches of tensors; the two differ in detail, so a model that copes with this one was not
    trained on its exact artifacts."""
    import io

    import numpy as np
    from PIL import Image

    squeeze = x.ndim == 3
    batch = x[None] if squeeze else x
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"libjpeg_roundtrip wants RGB images (N, 3, H, W) or (3, H, W), got {tuple(x.shape)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality {quality} is outside 1..100")
    out = []
    for img in batch:
        buf = io.BytesIO()
        arr = (img.detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        Image.fromarray(arr).save(buf, "JPEG", quality=int(quality))
        buf.seek(0)
        out.append(torch.from_numpy(np.array(Image.open(buf).convert("RGB"))).permute(2, 0, 1))
    y = (torch.stack(out).float() / 255).to(x.device, x.dtype)
    return y[0] if squeeze else y


# name -> fn(hr, scale, generator=None) -> lr
pipelines = {"bicubic": bicubic, "avgpool": avgpool, "realesrgan": _realesrgan,
             "realesrgan_mild": _realesrgan_mild, "realesrgan_ref": _realesrgan_ref, "camera_blur": _camera_blur,
             "camera_jpeg": _camera_jpeg}
# name -> fn(hr, scale, generator=None) -> (target, lr): pipelines that also change the HR target
pair_pipelines = {"camera_pair": _camera_pair}


def known_pipelines() -> list[str]:
    return sorted(pipelines) + sorted(pair_pipelines)


def pair_names(pipeline) -> list[str]:
    """The pair pipelines (those that change the target) a pipeline name or mixture uses."""
    return sorted(n for n in (pipeline if isinstance(pipeline, dict) else [pipeline]) if n in pair_pipelines)


def check_pipeline(pipeline) -> None:
    """A ValueError naming what is wrong with a pipeline name or mixture."""
    names = list(pipeline) if isinstance(pipeline, dict) else [pipeline]
    bad = [n for n in names if n not in pipelines and n not in pair_pipelines]
    if bad:
        raise ValueError(f"unknown degradation pipeline {bad[0]!r}; known: {known_pipelines()}")
    if isinstance(pipeline, dict) and (any(float(w) < 0 for w in pipeline.values()) or
                                       sum(float(w) for w in pipeline.values()) <= 0):
        raise ValueError(f"degradation mixture {pipeline}: weights must be >= 0 with a positive sum")


def _run(name: str, hr: torch.Tensor, scale: int, generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, lr) of one pipeline; the target is ``hr`` itself (not a copy) unless the pipeline
    changes it, and always has ``hr``'s shape (the LR is of ``hr`` cropped to a multiple of ``scale``)."""
    if name in pair_pipelines:
        return pair_pipelines[name](hr, scale, generator=generator)
    return hr, pipelines[name](hr, scale, generator=generator)


def degrade(hr: torch.Tensor, scale: int, pipeline="bicubic",
            generator: torch.Generator | None = None, with_target: bool = False):
    """The front door the training recipes use: HR [0,1] -> LR [0,1] with ``pipeline`` (a name
    or a ``{name: weight}`` mixture, one pipeline drawn per image). ``with_target``: return
    (target, LR), the target being the HR (same shape, not a copy) except where a pair pipeline
    changed it; without it, a pair pipeline is refused."""
    check_pipeline(pipeline)
    names = sorted(pipeline) if isinstance(pipeline, dict) else [pipeline]
    pairs = pair_names(pipeline)
    if pairs and not with_target:
        raise ValueError(f"degradation {pairs[0]!r} also changes the HR target, which this caller keeps as it "
                         "is; use it where the recipe trains on degrade(..., with_target=True) (the standard "
                         "and perceptual recipes, `upstep degrade`)")
    if not isinstance(pipeline, dict):
        target, lr = _run(pipeline, hr, scale, generator)
        return (target, lr) if with_target else lr
    squeeze = hr.ndim == 3
    x = hr[None] if squeeze else hr
    probs = torch.tensor([float(pipeline[n]) for n in names], dtype=torch.float64)
    pick = torch.multinomial(probs, x.shape[0], replacement=True, generator=generator)
    out, target = None, x.clone() if pairs else x
    for k, name in enumerate(names):   # every name, even if unpicked: size-independent draws
        idx = torch.nonzero(pick == k).flatten()
        if idx.numel() == 0:
            continue
        t, lr = _run(name, x[idx.to(x.device)], scale, generator)
        if out is None:
            out = lr.new_zeros((x.shape[0], *lr.shape[1:]))
        out[idx.to(x.device)] = lr
        if name in pair_pipelines:
            target[idx.to(x.device)] = t.to(target.dtype)
    if squeeze:
        out, target = out[0], target[0]
    return (target, out) if with_target else out


__all__ = ["as_batch", "imresize", "bicubic", "avgpool", "degrade", "check_pipeline", "known_pipelines", "pipelines",
           "pair_names", "pair_pipelines", "quantize", "libjpeg_roundtrip"]
