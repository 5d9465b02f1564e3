"""Real-ESRGAN's second-order degradation model (Wang et al., ICCV-W 2021, arXiv:2107.10833).

HR -> [blur -> resize -> noise -> JPEG] -> [blur -> resize -> noise] -> final stage -> LR, where
the final stage is ``resize to H/s x W/s + sinc filter`` then JPEG, or JPEG then ``resize + sinc``,
in random order (50/50). Section references are to the paper:

* §3.1 classical degradations: blur kernels (isotropic/anisotropic Gaussian, generalised Gaussian,
  plateau), resize (area/bilinear/bicubic, up/down/keep), Gaussian and Poisson noise (colour or
  gray), JPEG;
* §3.2 high-order degradation: the chain above applied twice;
* §3.3 sinc filters: ringing/overshoot artifacts, in both blur stages and the final stage.

The numeric ranges are those of the paper and its released training options
(``train_realesrnet_x4plus.yml``); they are the fields of :class:`RealESRGANConfig`.

Differences from the reference implementation (``RealESRGANModel.feed_data``):

* everything that can differ per image does (kernel, noise kind and level, JPEG quality, whether
  the second blur happens); the resize factor, interpolation mode and final-stage order are shared
  by the batch because the batch must keep one size (the reference shares them too);
* the reference degrades a USM-sharpened copy of the HR image; here the HR image given is degraded:
  the perceptual recipe's ``usm_target`` passes USM(HR) (``upstep.degrade.usm``), as the reference;
* JPEG is ``kornia.enhance.jpeg_codec_differentiable`` (the DiffJPEG model the reference uses).
  Its rounding of the DCT coefficients is ``RealESRGANConfig.jpeg_rounding``: ``"soft"`` is
  kornia's differentiable ``round(x) + (x - round(x))^3``, about 0.7 dB milder than the reference
  at equal quality; ``"hard"`` is plain rounding, what the reference's
  ``DiffJPEG(differentiable=False)`` does (the ``realesrgan_ref`` pipeline). Neither is libjpeg.

Determinism: every random number is drawn from one CPU ``torch.Generator`` in a fixed order and
then moved to the input's device, so a seed gives the same LR on CPU and GPU (up to float
round-off of the device's kernels). Poisson counts are sampled on the CPU for the same reason.
The per-pixel noise of each noise stage comes from a child generator seeded by one draw, so the
pipeline consumes the same random numbers whatever the image size: the same generator state gives
the same degradation parameters at every scale (teacher and student views of one crop).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from upstep.degrade import as_batch, quantize

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
MAX_KERNEL = 21  # every kernel is zero-padded to 21 x 21 so a batch stacks


@dataclass(frozen=True)
class RealESRGANConfig:
    """Ranges of the two degradation orders (§3.1-§3.3). ``*2`` fields are the second order.

    Ranges are ``(low, high)`` of a uniform draw; probabilities are per image. Noise sigma is in
    0-255 units.
    """

    # blur (§3.1 "Blur", §3.3 sinc): kernel size uniform over odd 7..21
    kernel_range: tuple[int, ...] = tuple(range(7, 22, 2))
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)  # generalised Gaussian shape
    betap_range: tuple[float, float] = (1.0, 2.0)  # plateau shape
    # resize (§3.1 "Resize"): up / down / keep, then a factor in the range
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)
    resize_range: tuple[float, float] = (0.15, 1.5)
    # noise (§3.1 "Noise"): Gaussian with this prob, else Poisson; gray (same on all channels)
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    # JPEG (§3.1 "JPEG compression"); rounding of the DCT coefficients: "soft" (kornia's
    # differentiable rounding) or "hard" (the reference's non-differentiable DiffJPEG)
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    jpeg_rounding: str = "soft"

    # second order (§3.2)
    second_blur_prob: float = 0.8
    kernel_list2: tuple[str, ...] = KERNEL_TYPES
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)  # relative to the final LR size
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)

    # final stage (§3.3): sinc filter with this prob, cutoff in [pi/3, pi]
    final_sinc_prob: float = 0.8

    def stage(self, name: str, stage: int):
        """Field ``name`` of order ``stage`` (1 or 2): ``stage("blur_sigma", 2)`` is ``blur_sigma2``."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage!r}")
        return getattr(self, name if stage == 1 else name + "2")


# Narrower ranges for fidelity models (ours, not from the paper): blur sigma <= 1.5 / 1.0, resize
# factors near 1, noise sigma <= 10 / 8 (0-255), Poisson scale <= 1, JPEG quality >= 60, second
# blur with probability 0.5.
MILD = RealESRGANConfig(
    blur_sigma=(0.2, 1.5), resize_range=(0.5, 1.2), noise_range=(1.0, 10.0), poisson_scale_range=(0.05, 1.0),
    jpeg_range=(60.0, 95.0), second_blur_prob=0.5, blur_sigma2=(0.2, 1.0), resize_range2=(0.6, 1.1),
    noise_range2=(1.0, 8.0), poisson_scale_range2=(0.05, 0.8), jpeg_range2=(60.0, 95.0))

# The reference's JPEG: plain rounding of the DCT coefficients (``DiffJPEG(differentiable=False)``).
REFERENCE = RealESRGANConfig(jpeg_rounding="hard")


# --------------------------------------------------------------------------------------------
# random numbers: all from one CPU generator
# --------------------------------------------------------------------------------------------

def _generator(generator: torch.Generator | None) -> torch.Generator:
    """The CPU generator to draw from; ``None`` seeds a new one from torch's global RNG (so
    ``torch.manual_seed`` still makes a run repeatable)."""
    if generator is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator().manual_seed(seed)
    if generator.device.type != "cpu":
        raise ValueError("realesrgan draws its random numbers on the CPU: pass a CPU torch.Generator")
    return generator


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _choice(g: torch.Generator, n: int, probs: Sequence[float]) -> torch.Tensor:
    """``n`` indices drawn with probabilities ``probs``."""
    return torch.multinomial(torch.tensor(probs, dtype=torch.float64), n, replacement=True, generator=g)


# --------------------------------------------------------------------------------------------
# blur kernels (§3.1, §3.3)
# --------------------------------------------------------------------------------------------

def _batch(v) -> torch.Tensor:
    """A number or tensor as a flat float64 tensor."""
    return torch.as_tensor(v, dtype=torch.float64).reshape(-1)


def _grid_and_support(size, pad_to: int | None):
    """(n,) sizes -> coordinates (1, K, K) centred at 0 and the (n, K, K) k x k support mask."""
    sizes = torch.as_tensor(size).reshape(-1).long()
    if bool((sizes % 2 == 0).any()) or bool((sizes < 1).any()):
        raise ValueError(f"kernel sizes must be odd and positive, got {sizes.tolist()}")
    k = max(int(sizes.max()), pad_to or 0)
    ax = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    half = (sizes // 2).to(torch.float64)[:, None, None]
    support = (xx.abs() <= half) & (yy.abs() <= half)
    return xx[None], yy[None], support


def _mahalanobis(size, sigma_x, sigma_y, theta, pad_to):
    """x^T Sigma^-1 x on the grid with Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T."""
    xx, yy, support = _grid_and_support(size, pad_to)
    n = support.shape[0]
    sx = _batch(sigma_x)
    n = max(n, sx.numel())
    sx = sx.expand(n)
    sy = sx if sigma_y is None else _batch(sigma_y).expand(n)
    th = _batch(theta).expand(n)
    c, s = torch.cos(th)[:, None, None], torch.sin(th)[:, None, None]
    u = c * xx + s * yy  # coordinates along the kernel's principal axes
    v = -s * xx + c * yy
    q = (u / sx[:, None, None]) ** 2 + (v / sy[:, None, None]) ** 2
    return q, support.expand(n, -1, -1)


def _finish(k: torch.Tensor, support: torch.Tensor, scalar: bool) -> torch.Tensor:
    k = torch.where(support, k, torch.zeros_like(k))
    k = (k / k.sum(dim=(-2, -1), keepdim=True)).float()
    return k[0] if scalar else k


def _is_scalar(*vals) -> bool:
    return all(torch.as_tensor(v).ndim == 0 for v in vals if v is not None)


def gaussian_kernel(size, sigma_x, sigma_y=None, theta=0.0, pad_to: int | None = None) -> torch.Tensor:
    """Bivariate Gaussian: ``k(x) ∝ exp(-1/2 x^T Σ^-1 x)``, ``Σ = R(θ) diag(σx², σy²) R(θ)^T``.

    ``sigma_y=None`` is isotropic. Arguments are numbers or (n,) tensors (one kernel each);
    returns (K, K) or (n, K, K), normalised to sum 1, zero outside the central ``size`` x ``size``
    square, K = ``pad_to`` or the largest size.
    """
    q, support = _mahalanobis(size, sigma_x, sigma_y, theta, pad_to)
    return _finish(torch.exp(-0.5 * q), support, _is_scalar(size, sigma_x, sigma_y, theta))


def generalized_gaussian_kernel(size, sigma_x, sigma_y=None, theta=0.0, beta=1.0,
                                pad_to: int | None = None) -> torch.Tensor:
    """Generalised Gaussian: ``k(x) ∝ exp(-1/2 (x^T Σ^-1 x)^β)`` (β = 1: Gaussian; β < 1 heavier
    tails, β > 1 flatter top). Same arguments as :func:`gaussian_kernel`."""
    q, support = _mahalanobis(size, sigma_x, sigma_y, theta, pad_to)
    b = _batch(beta).expand(q.shape[0])[:, None, None]
    return _finish(torch.exp(-0.5 * q.pow(b)), support, _is_scalar(size, sigma_x, sigma_y, theta, beta))


def plateau_kernel(size, sigma_x, sigma_y=None, theta=0.0, beta=1.0, pad_to: int | None = None) -> torch.Tensor:
    """Plateau-shaped: ``k(x) ∝ 1 / (1 + (x^T Σ^-1 x)^β)``. Same arguments as :func:`gaussian_kernel`."""
    q, support = _mahalanobis(size, sigma_x, sigma_y, theta, pad_to)
    b = _batch(beta).expand(q.shape[0])[:, None, None]
    return _finish(1.0 / (1.0 + q.pow(b)), support, _is_scalar(size, sigma_x, sigma_y, theta, beta))


def sinc_kernel(size, omega_c, pad_to: int | None = None) -> torch.Tensor:
    """Circular low-pass (2-D sinc, §3.3): ``k(r) ∝ ω_c J1(ω_c r) / (2π r)``, ``k(0) = ω_c² / (4π)``,
    ``r`` the distance to the centre and ``ω_c`` the cutoff in radians (π = Nyquist)."""
    xx, yy, support = _grid_and_support(size, pad_to)
    w = _batch(omega_c)
    n = max(support.shape[0], w.numel())
    w = w.expand(n)[:, None, None]
    r = torch.sqrt(xx**2 + yy**2)
    safe_r = torch.where(r == 0, torch.ones_like(r), r)
    k = torch.where(r == 0, w**2 / (4 * math.pi), w * torch.special.bessel_j1(w * safe_r) / (2 * math.pi * safe_r))
    return _finish(k, support.expand(n, -1, -1), _is_scalar(size, omega_c))


def identity_kernel(n: int, k: int = MAX_KERNEL) -> torch.Tensor:
    """(n, k, k) unit impulses: filtering with them changes nothing."""
    out = torch.zeros(n, k, k)
    out[:, k // 2, k // 2] = 1
    return out


def random_kernels(g: torch.Generator, n: int, stage: int | str, config: RealESRGANConfig | None = None) -> torch.Tensor:
    """(n, 21, 21) blur kernels of order ``stage`` (1 or 2), or ``"final"`` for the final sinc.

    Orders 1 and 2 (§3.1): a sinc (prob ``sinc_prob``, cutoff in [π/3, π] for sizes < 13, else
    [π/5, π]) or a kernel of a type drawn from ``kernel_list``/``kernel_prob`` with σ in
    ``blur_sigma`` (σx, σy, θ ∈ [-π, π] independent for the anisotropic types). As in the
    reference, β is drawn from [low, 1] or [1, high] with equal odds. Order 2 is replaced by an
    impulse with prob 1 - ``second_blur_prob``. ``"final"`` (§3.3): a sinc with prob
    ``final_sinc_prob`` (cutoff in [π/3, π]), else an impulse.
    """
    cfg = config or RealESRGANConfig()
    sizes_all = torch.tensor(cfg.kernel_range)
    size = sizes_all[torch.randint(len(sizes_all), (n,), generator=g)]
    if stage == "final":
        use = torch.rand(n, generator=g, dtype=torch.float64) < cfg.final_sinc_prob
        omega = _uniform(g, n, math.pi / 3, math.pi)
        return torch.where(use[:, None, None], sinc_kernel(size, omega, pad_to=MAX_KERNEL), identity_kernel(n))

    # order 1 or 2: draw everything first (fixed order of draws), then build
    kinds = cfg.stage("kernel_list", stage)
    kind = _choice(g, n, cfg.stage("kernel_prob", stage))
    sigma = cfg.stage("blur_sigma", stage)
    sx, sy = _uniform(g, n, *sigma), _uniform(g, n, *sigma)
    theta = _uniform(g, n, -math.pi, math.pi)
    low_half = torch.rand(n, generator=g, dtype=torch.float64) < 0.5
    u = torch.rand(n, generator=g, dtype=torch.float64)
    use_sinc = torch.rand(n, generator=g, dtype=torch.float64) < cfg.stage("sinc_prob", stage)
    omega = torch.where(size < 13, _uniform(g, n, math.pi / 3, math.pi), _uniform(g, n, math.pi / 5, math.pi))
    keep = torch.rand(n, generator=g, dtype=torch.float64) < (cfg.second_blur_prob if stage == 2 else 1.0)

    names = [kinds[i] for i in kind.tolist()]
    iso = torch.tensor([not nm.endswith("aniso") for nm in names])
    sy = torch.where(iso, sx, sy)
    theta = torch.where(iso, torch.zeros_like(theta), theta)

    def beta(lo_hi):  # "assume beta_range[0] < 1 < beta_range[1]" (reference); [1, 1] gives 1
        lo, hi = lo_hi
        return torch.where(low_half, lo + (min(1.0, hi) - lo) * u, max(1.0, lo) + (hi - max(1.0, lo)) * u)

    family = [nm.split("_")[0] if "_" in nm else "gaussian" for nm in names]
    out = torch.empty(n, MAX_KERNEL, MAX_KERNEL)
    for fam, fn, betas in (("gaussian", None, None),
                           ("generalized", generalized_gaussian_kernel, beta(cfg.stage("betag_range", stage))),
                           ("plateau", plateau_kernel, beta(cfg.stage("betap_range", stage)))):
        idx = torch.tensor([i for i, f in enumerate(family) if f == fam], dtype=torch.long)
        if idx.numel() == 0:
            continue
        if fn is None:
            out[idx] = gaussian_kernel(size[idx], sx[idx], sy[idx], theta[idx], pad_to=MAX_KERNEL)
        else:
            out[idx] = fn(size[idx], sx[idx], sy[idx], theta[idx], betas[idx], pad_to=MAX_KERNEL)
    out = torch.where(use_sinc[:, None, None], sinc_kernel(size, omega, pad_to=MAX_KERNEL), out)
    return torch.where(keep[:, None, None], out, identity_kernel(n))


def blur(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Filter image i of ``x`` (N, C, H, W) with ``kernels[i]`` (N, K, K), reflect borders."""
    from kornia.filters import filter2d

    kernels = kernels.to(device=x.device, dtype=x.dtype)
    # the kernels are zero outside their support: crop the batch to the widest one (exact, faster)
    nz = kernels.abs().amax(dim=0) > 0
    c = kernels.shape[-1] // 2
    r = int(max((torch.nonzero(nz) - c).abs().max().item(), 0)) if bool(nz.any()) else 0
    kernels = kernels[:, c - r: c + r + 1, c - r: c + r + 1]
    border = "reflect" if min(x.shape[-2:]) > r else "replicate"  # reflect needs pad < size
    return filter2d(x, kernels, border_type=border)


def random_blur(x: torch.Tensor, g: torch.Generator, stage: int | str,
                config: RealESRGANConfig | None = None) -> torch.Tensor:
    """Blur each image with its own kernel from :func:`random_kernels`."""
    return blur(x, random_kernels(g, x.shape[0], stage, config))


# --------------------------------------------------------------------------------------------
# resize (§3.1)
# --------------------------------------------------------------------------------------------

def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``F.interpolate`` to ``size`` with ``mode`` in area / bilinear / bicubic (as the reference:
    no antialiasing, values not clipped)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode)


def draw_resize(g: torch.Generator, stage: int, config: RealESRGANConfig | None = None) -> tuple[float, str]:
    """(factor, mode) of order ``stage``: up (factor in [1, high]), down ([low, 1]) or keep (1)
    with ``resize_prob``; mode uniform over area / bilinear / bicubic."""
    cfg = config or RealESRGANConfig()
    lo, hi = cfg.stage("resize_range", stage)
    kind = int(_choice(g, 1, cfg.stage("resize_prob", stage)))
    u = float(torch.rand(1, generator=g, dtype=torch.float64))
    factor = (1 + (hi - 1) * u, lo + (1 - lo) * u, 1.0)[kind]
    mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (1,), generator=g))]
    return factor, mode


def random_resize(x: torch.Tensor, g: torch.Generator, stage: int, config: RealESRGANConfig | None = None,
                  base_size: tuple[float, float] | None = None) -> torch.Tensor:
    """Resize the batch to ``int(base_size * factor)`` with a drawn factor and mode.

    ``base_size`` defaults to the input's size (order 1); the pipeline passes the final LR size
    (H/s, W/s) for order 2, as the reference does.
    """
    factor, mode = draw_resize(g, stage, config)
    bh, bw = base_size if base_size is not None else x.shape[-2:]
    return resize(x, (int(bh * factor), int(bw * factor)), mode)


# --------------------------------------------------------------------------------------------
# noise (§3.1)
# --------------------------------------------------------------------------------------------

def _per_image(v, n: int, device, dtype) -> torch.Tensor:
    return torch.as_tensor(v, dtype=dtype).reshape(-1).expand(n).reshape(n, 1, 1, 1).to(device)


def add_gaussian_noise(x: torch.Tensor, sigma, gray=False, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clip(x + σ/255 · n)``, ``n ~ N(0, 1)`` per pixel and channel, or one ``n`` for all channels
    where ``gray``. ``sigma`` (0-255 units) and ``gray`` are numbers or (N,) tensors."""
    g = _generator(generator)
    n = x.shape[0]
    noise = torch.randn(x.shape, generator=g, dtype=torch.float32).to(device=x.device, dtype=x.dtype)
    gray = _per_image(gray, n, x.device, torch.bool)
    noise = torch.where(gray, noise[:, :1].expand_as(noise), noise)
    return (x + noise * _per_image(sigma, n, x.device, x.dtype) / 255.0).clamp(0, 1)


def _luma(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def add_poisson_noise(x: torch.Tensor, scale, gray=False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shot noise: ``clip(x + scale · (Poisson(v·x̂)/v - x̂))`` with ``x̂`` the image rounded to
    8 bits and ``v`` = 2^ceil(log2(number of distinct levels in x̂)), per image (the reference's
    scikit-image recipe). ``gray`` images get the noise of their luma on every channel."""
    g = _generator(generator)
    n = x.shape[0]
    gray = torch.as_tensor(gray).reshape(-1).expand(n).tolist()
    scale = torch.as_tensor(scale, dtype=torch.float64).reshape(-1).expand(n).tolist()
    out = []
    for i in range(n):
        img = _luma(x[i:i + 1]) if gray[i] else x[i:i + 1]
        img = quantize(img)
        levels = len(torch.unique(img))
        vals = 2.0 ** math.ceil(math.log2(max(levels, 1)))
        counts = torch.poisson((img * vals).float().cpu(), generator=g)  # CPU draw: device-independent
        noise = counts.to(device=x.device, dtype=x.dtype) / vals - img
        out.append((x[i:i + 1] + scale[i] * noise.expand_as(x[i:i + 1])).clamp(0, 1))
    return torch.cat(out) if out else x


def random_noise(x: torch.Tensor, g: torch.Generator, stage: int, config: RealESRGANConfig | None = None) -> torch.Tensor:
    """Gaussian noise (prob ``gaussian_noise_prob``, σ in ``noise_range``) or else Poisson noise
    (scale in ``poisson_scale_range``), gray with prob ``gray_noise_prob``; per image."""
    cfg = config or RealESRGANConfig()
    n = x.shape[0]
    use_gauss = torch.rand(n, generator=g, dtype=torch.float64) < cfg.stage("gaussian_noise_prob", stage)
    sigma = _uniform(g, n, *cfg.stage("noise_range", stage))
    gray = torch.rand(n, generator=g, dtype=torch.float64) < cfg.stage("gray_noise_prob", stage)
    pscale = _uniform(g, n, *cfg.stage("poisson_scale_range", stage))
    if x.shape[1] == 1:
        gray = torch.zeros_like(gray)  # one channel: colour and gray noise are the same
    # per-pixel draws from a child generator: g advances by one draw whatever the image size
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=g)))
    out = x.clone()
    gi, pi = torch.nonzero(use_gauss).flatten(), torch.nonzero(~use_gauss).flatten()
    if gi.numel():
        out[gi.to(x.device)] = add_gaussian_noise(x[gi.to(x.device)], sigma[gi], gray[gi], g)
    if pi.numel():
        out[pi.to(x.device)] = add_poisson_noise(x[pi.to(x.device)], pscale[pi], gray[pi], g)
    return out


# --------------------------------------------------------------------------------------------
# JPEG (§3.1)
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _hard_rounding():
    """kornia's JPEG codec with plain rounding of the quantised DCT coefficients (no gradient
    through it; the degradations are never differentiated). kornia rounds through this one
    module-level function, so swapping it for the duration of a call is enough."""
    import kornia.enhance.jpeg as kj

    soft = kj._differentiable_polynomial_rounding
    kj._differentiable_polynomial_rounding = torch.round
    try:
        yield
    finally:
        kj._differentiable_polynomial_rounding = soft


def jpeg(x: torch.Tensor, quality, rounding: str = "soft") -> torch.Tensor:
    """JPEG encode-decode at ``quality`` (number or (N,) tensor in [0, 100]) with kornia's
    DiffJPEG codec, rounding its coefficients ``"soft"`` (differentiable) or ``"hard"`` (as the
    reference's degradation). The image is reflect-padded to a multiple of 16 (4:2:0 chroma and
    8x8 blocks) and cropped back; one-channel images are coded as gray RGB."""
    from kornia.enhance import jpeg_codec_differentiable

    if rounding not in ("soft", "hard"):
        raise ValueError(f"JPEG rounding must be 'soft' or 'hard', got {rounding!r}")

    n, c, h, w = x.shape
    q = torch.as_tensor(quality, dtype=x.dtype).reshape(-1).expand(n).to(x.device)
    y = x.clamp(0, 1)
    y = y.expand(n, 3, h, w) if c == 1 else y
    ph, pw = (-h) % 16, (-w) % 16
    if ph or pw:
        y = F.pad(y, (0, pw, 0, ph), mode="reflect" if (ph < h and pw < w) else "replicate")
    with _hard_rounding() if rounding == "hard" else contextlib.nullcontext():
        y = jpeg_codec_differentiable(y, q.contiguous())[..., :h, :w].clamp(0, 1)
    return y.mean(dim=1, keepdim=True) if c == 1 else y


def random_jpeg(x: torch.Tensor, g: torch.Generator, stage: int, config: RealESRGANConfig | None = None) -> torch.Tensor:
    """JPEG with a quality per image drawn from ``jpeg_range``."""
    cfg = config or RealESRGANConfig()
    return jpeg(x, _uniform(g, x.shape[0], *cfg.stage("jpeg_range", stage)), cfg.jpeg_rounding)


# --------------------------------------------------------------------------------------------
# final stage (§3.3) and the whole pipeline (§3.2)
# --------------------------------------------------------------------------------------------

def random_final(x: torch.Tensor, g: torch.Generator, size: tuple[int, int],
                 config: RealESRGANConfig | None = None) -> torch.Tensor:
    """[resize to ``size`` + sinc] then JPEG, or JPEG then [resize + sinc], 50/50 for the batch."""
    cfg = config or RealESRGANConfig()
    n = x.shape[0]
    kernels = random_kernels(g, n, "final", cfg)
    resize_first = bool(torch.rand(1, generator=g) < 0.5)
    mode = RESIZE_MODES[int(torch.randint(len(RESIZE_MODES), (1,), generator=g))]
    quality = _uniform(g, n, *cfg.jpeg_range2)
    if resize_first:
        return jpeg(blur(resize(x, size, mode), kernels), quality, cfg.jpeg_rounding)
    return blur(resize(jpeg(x, quality, cfg.jpeg_rounding), size, mode), kernels)


# stage name -> function, for tests and for building other pipelines from the same parts
stages = {"blur": random_blur, "resize": random_resize, "noise": random_noise, "jpeg": random_jpeg,
          "final": random_final}


def realesrgan(hr: torch.Tensor, scale: int, generator: torch.Generator | None = None,
               config: RealESRGANConfig | None = None) -> torch.Tensor:
    """Real-ESRGAN second-order degradation of ``hr`` (N, C, H, W) or (C, H, W) in [0, 1].

    HR is cropped to a multiple of ``scale``; returns the LR (…, H//scale, W//scale) rounded to
    8-bit levels, on ``hr``'s device. ``generator`` (CPU) fixes every random choice.
    """
    cfg = config or RealESRGANConfig()
    g = _generator(generator)
    x, squeeze = as_batch(hr, scale, "realesrgan")
    h, w = x.shape[-2:]
    out_dtype = x.dtype
    x = x.float()

    # first order (§3.1)
    x = random_blur(x, g, 1, cfg)
    x = random_resize(x, g, 1, cfg)
    x = random_noise(x, g, 1, cfg)
    x = random_jpeg(x, g, 1, cfg)
    # second order (§3.2): size relative to the final LR size, as in the reference
    x = random_blur(x, g, 2, cfg)
    x = random_resize(x, g, 2, cfg, base_size=(h / scale, w / scale))
    x = random_noise(x, g, 2, cfg)
    # final stage (§3.3)
    x = random_final(x, g, (h // scale, w // scale), cfg)
    lr = quantize(x).to(out_dtype)
    return lr[0] if squeeze else lr


__all__ = ["RealESRGANConfig", "MILD", "REFERENCE", "realesrgan", "stages", "gaussian_kernel", "generalized_gaussian_kernel",
           "plateau_kernel", "sinc_kernel", "identity_kernel", "random_kernels", "blur", "random_blur",
           "resize", "draw_resize", "random_resize", "add_gaussian_noise", "add_poisson_noise",
           "random_noise", "jpeg", "random_jpeg", "random_final"]
