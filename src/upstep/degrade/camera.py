"""Clean but blurred LR: the kind of input a real camera gives (issue 29's diagnosis).

Real-camera LR/HR pairs (RealSR's Canon crops) are clean — no JPEG blocks, little noise — but
blurrier than the MATLAB-bicubic LR of the same HR: their mean gradient magnitude is 0.81 of the
bicubic LR's (``docs/results/camera_lr``). Neither of the other pipelines makes that kind of input often: exact bicubic
is sharper, and Real-ESRGAN's second-order chain is mostly noisy and compressed. This pipeline
makes it on purpose:

    HR -> Gaussian blur (per image: σ_x = s·U(σ_lo, σ_hi), σ_y = σ_x·U(0.7, 1), angle U(0, π))
       -> MATLAB bicubic 1/s -> Gaussian noise σ ~ U(0, 3) (0-255 units; gray for 40 % of images)
       -> 8-bit rounding

with s the scale, so the blur is a fixed width in LR pixels at every scale. The default range
(0.3 to 0.8 LR pixels) is set so that the gradient ratio against bicubic LR spans the one
measured on real camera pairs: ``benchmarks/camera_lr.py`` measures both
(``docs/results/camera_lr``). Random numbers come
from one CPU generator in a fixed order, as in :mod:`upstep.degrade.realesrgan`.
"""
from __future__ import annotations

import math

import torch

from upstep.degrade import as_batch, quantize
from upstep.degrade.realesrgan import MAX_KERNEL, _generator, _uniform, add_gaussian_noise, blur, gaussian_kernel, jpeg
from upstep.degrade.resize import imresize

SIGMA_LR = (0.3, 0.8)     # blur width in LR pixels
SIGMA_HR = (0.7, 1.1)     # camera_pair: the HR target's blur width in HR pixels
NOISE = (0.0, 3.0)        # Gaussian noise sigma, 0-255 units
JPEG_QUALITY = (70.0, 95.0)   # camera_jpeg: the quality a camera or a photo app saves at
GRAY_NOISE_PROB = 0.4


def camera_blur(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None,
                sigma_lr: tuple[float, float] = SIGMA_LR) -> torch.Tensor:
    """Blur, bicubic downscale and faint noise (module docstring) of ``hr`` (N, C, H, W) or
    (C, H, W) in [0, 1]; HR is cropped to a multiple of ``scale``. Returns 8-bit-rounded LR."""
    g = _generator(generator)
    x, squeeze = as_batch(hr, scale, "camera_blur")
    x = x.float()
    n = x.shape[0]
    sx = _uniform(g, n, *sigma_lr) * scale
    sy = sx * _uniform(g, n, 0.7, 1.0)
    theta = _uniform(g, n, 0.0, math.pi)
    sigma = _uniform(g, n, *NOISE)
    gray = torch.rand(n, generator=g, dtype=torch.float64) < GRAY_NOISE_PROB
    noise_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    x = blur(x, gaussian_kernel(MAX_KERNEL, sx, sy, theta, pad_to=MAX_KERNEL))
    x = imresize(x, 1.0 / scale)
    x = add_gaussian_noise(x, sigma, gray, torch.Generator().manual_seed(noise_seed))
    lr = quantize(x).to(hr.dtype)
    return lr[0] if squeeze else lr


def camera_jpeg(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None,
                quality: tuple[float, float] = JPEG_QUALITY) -> torch.Tensor:
    """:func:`camera_blur`'s LR saved as a JPEG of quality U(``quality``) per image (the
    reference's hard rounding, 4:2:0 chroma): a camera photo as it is usually stored. Real camera
    photos are JPEGs far more often than lossless files, and even quality 90-95 changes what a
    model trained on clean camera LR does with them (``docs/results/camera_jpeg``)."""
    g = _generator(generator)
    lr = camera_blur(hr, scale, generator=g)
    squeeze = lr.ndim == 3
    x = lr[None] if squeeze else lr
    out = quantize(jpeg(x.float(), _uniform(g, x.shape[0], *quality), "hard")).to(hr.dtype)
    return out[0] if squeeze else out


def soften(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Image i of ``x`` (N, C, H, W) blurred by an isotropic Gaussian of ``sigma[i]`` px (reflect
    borders): camera_pair's HR softening, also what ``benchmarks/camera_hr.py`` calibrates it with."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(x.shape[0])
    return blur(x, gaussian_kernel(MAX_KERNEL, sigma, sigma, torch.zeros_like(sigma), pad_to=MAX_KERNEL))


def camera_pair(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None,
                sigma_hr: tuple[float, float] = SIGMA_HR) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, LR) from ``hr`` (N, C, H, W) or (C, H, W) in [0, 1]: the target, of ``hr``'s shape,
    is ``hr`` blurred by a Gaussian of σ ~ U(sigma_hr) HR px (per image); the LR is
    :func:`camera_blur` of the target (which crops it to a multiple of ``scale``), module docstring."""
    g = _generator(generator)
    as_batch(hr, scale, "camera_pair")     # the same errors as the other pipelines for a bad shape
    squeeze = hr.ndim == 3
    x = (hr[None] if squeeze else hr).float()
    target = soften(x, _uniform(g, x.shape[0], *sigma_hr)).to(hr.dtype)
    lr = camera_blur(target, scale, generator=g)
    return (target[0], lr[0]) if squeeze else (target, lr)


__all__ = ["camera_blur", "camera_jpeg", "camera_pair", "soften", "SIGMA_LR", "SIGMA_HR", "JPEG_QUALITY"]
