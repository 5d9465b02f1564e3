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
    kernel's radius of replicate padding on every side."""
    c, r = x.shape[1], k.numel() // 2 * dilation
    if not padded:
        x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c, dilation=(1, dilation))
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c, dilation=(dilation, 1))


def local_periodic_component(x: torch.Tensor, period: int = 4, sigma: float = 6.0) -> torch.Tensor:
    """NCHW -> the locally ``period``-periodic part of ``x`` (same shape), see the module doc."""
    w, w_phase = _kernels(period, sigma, x.device, x.dtype)
    r = w.numel() // 2                       # = (w_phase.numel() // 2) * period: one padding serves both
    xp = F.pad(x, (r, r, r, r), mode="replicate")
    return _separable(xp, w_phase, dilation=period, padded=True) - _separable(xp, w, padded=True)


def degrid_latent(z: torch.Tensor, factor: int, sigma: float) -> torch.Tensor:
    """A pixel-unshuffle latent with the notch applied in pixel space (``sigma`` in HR px)."""
    # Under autocast, in its dtype (bf16 on CPU: the blur is memory-bound, half the bytes) and
    # contiguous NCHW (depthwise convolutions on a channels-last bf16 tensor take a far slower path).
    dev = z.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else z.dtype
    x = F.pixel_shuffle(z.contiguous().to(dtype), factor)
    return F.pixel_unshuffle(x - local_periodic_component(x, factor, sigma), factor).to(z.dtype)
