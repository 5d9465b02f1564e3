"""A fixed notch at the 4x4 grid frequencies: removes a locally p-periodic pattern (checkerboard).

With a pixel-unshuffle latent, each latent channel is one position of a p x p pixel cell, so an
error that varies slowly in the latent but differs between channels is a p-periodic pattern in
pixels — the grain perceptual and adversarial gradients excite (``perceptual_x4_probe``). Its
spectrum sits at the grid frequencies (i/p, j/p) cycles/px, (i, j) != (0, 0).

``local_periodic_component(x)`` estimates that pattern at every pixel as

    P(x) = (mean of x over the pixels at the same position of their p x p cell) - (mean of x),

both means Gaussian-weighted (standard deviation ``sigma`` px) around the pixel. Both are
convolutions, so P is linear and shift-invariant: with w the Gaussian and w_p = p^2 w on the
sublattice pZ^2 (0 elsewhere), P = w_p * x - w * x, whose frequency response
sum_{(i,j)} W(f - i/p, g - j/p) - W(f, g) is 1 at every non-DC grid frequency, 0 at DC and
~0 away from the grid (a Gaussian bump of std 1/(2 pi sigma) cycles/px at each grid point).
``x - P(x)`` is therefore a notch filter there; a natural image has little energy at those
frequencies (``upstep.metrics.periodic``), so the notch leaves it nearly unchanged.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F


def _kernels(period: int, sigma: float, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1-D Gaussian w (radius a multiple of the period) and w_p, its taps at multiples of the
    period (to be applied with dilation ``period``), each normalised to sum 1."""
    radius = period * math.ceil(3 * sigma / period)
    n = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    w = torch.exp(-0.5 * (n / sigma) ** 2)
    w_phase = w[::period]
    return (w / w.sum()).to(dtype), (w_phase / w_phase.sum()).to(dtype)


def _separable(x: torch.Tensor, k: torch.Tensor, dilation: int = 1, padded: bool = False) -> torch.Tensor:
    """Depthwise separable correlation with the 1-D kernel ``k``; ``padded``: x already carries the
    kernel's radius of replicate padding on every side. (The direct form of the notch's two
    Gaussian passes; the notch itself runs as one FFT convolution.)"""
    c, r = x.shape[1], k.numel() // 2 * dilation
    if not padded:
        x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, dilation=(1, dilation))
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, dilation=(dilation, 1))


def _fft_size(n: int) -> int:
    """The smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = n
    while True:
        k = m
        for q in (2, 3, 5):
            while k % q == 0:
                k //= q
        if k == 1:
            return m
        m += 1


@functools.lru_cache(maxsize=16)
def _transfer(period: int, sigma: float, shape: tuple[int, int]) -> torch.Tensor:
    """rfft2 of P's 2-D kernel w_p (x) w_p (taps ``period`` apart) - w (x) w, placed at the origin
    of a ``shape`` array (float32, CPU; cached per tile shape)."""
    w, w_phase = _kernels(period, sigma, "cpu", torch.float64)
    r = w.numel() // 2
    k_phase = torch.zeros_like(w)
    k_phase[::period] = w_phase
    kernel = torch.zeros(shape, dtype=torch.float64)
    kernel[:2 * r + 1, :2 * r + 1] = torch.outer(k_phase, k_phase) - torch.outer(w, w)
    return torch.fft.rfft2(kernel).to(torch.complex64)


def local_periodic_component(x: torch.Tensor, period: int = 4, sigma: float = 6.0) -> torch.Tensor:
    """NCHW -> the locally ``period``-periodic part of ``x`` (same shape, float32 math), see the
    module doc. Computed as one FFT convolution with P's kernel over the replicate-padded image:
    the same numbers as the two separable Gaussian passes (``_separable``; to float rounding,
    tested), at a fraction of the cost (a 41-tap dilated depthwise convolution is a slow path in
    oneDNN). The padding is a multiple of the radius and the array is zero-extended to a fast FFT
    length at the far end only, so no output pixel sees a wrapped-around input."""
    w, _ = _kernels(period, sigma, "cpu", torch.float64)
    r = w.numel() // 2
    h, wd = x.shape[-2:]
    shape = (_fft_size(h + 2 * r), _fft_size(wd + 2 * r))
    xp = F.pad(x.float(), (r, r, r, r), mode="replicate")
    spec = torch.fft.rfft2(xp, s=shape) * _transfer(period, float(sigma), shape).to(x.device)
    y = torch.fft.irfft2(spec, s=shape)
    # the kernel sits at the origin, so output i is centred on padded input i - r, i.e. image pixel i - 2r
    return y[..., 2 * r:2 * r + h, 2 * r:2 * r + wd].to(x.dtype)


def degrid_latent(z: torch.Tensor, factor: int, sigma: float) -> torch.Tensor:
    """A pixel-unshuffle latent with the notch applied in pixel space (``sigma`` in HR px)."""
    x = F.pixel_shuffle(z.contiguous().float(), factor)
    out = F.pixel_unshuffle(x - local_periodic_component(x, factor, sigma), factor).to(z.dtype)
    if z.dim() == 4 and z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)  # keep the caller's layout (the decoder's convs)
    return out
