"""NIQE (Mittal, Soundararajan & Bovik 2013, "Making a 'completely blind' image quality
analyzer"): distance between a multivariate Gaussian fitted to natural-scene statistics of
the image's 96x96 blocks and the pristine model (offline file ``niqe/niqe_pris_params.npz``).
Lower is better. Follows the MATLAB release as ported in BasicSR: MSCN coefficients with the
7x7 window of the parameter file, AGGD fits by moment matching over shape 0.2..10 (step
0.001), 18 features per block at two scales (the second after MATLAB bicubic x0.5).
"""
from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve
from scipy.special import gamma

from upstep.degrade.resize import imresize
from upstep.metrics.lpips import MetricUnavailable
from upstep.paths import weights_root

BLOCK = 96
_GAM = np.arange(0.2, 10.001, 0.001)
_R_GAM = gamma(2 / _GAM) ** 2 / (gamma(1 / _GAM) * gamma(3 / _GAM))


@lru_cache(maxsize=2)
def load_pristine(folder: str | None = None):
    path = Path(folder) if folder else weights_root() / "niqe" / "niqe_pris_params.npz"
    if path.is_dir():
        path = path / "niqe_pris_params.npz"
    if not path.is_file():
        raise MetricUnavailable(f"NIQE unavailable: {path} not found (set UPSTEP_WEIGHTS)")
    d = np.load(path)
    return d["mu_pris_param"], d["cov_pris_param"], d["gaussian_window"]


def _aggd(x: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit: (shape alpha, left scale, right scale)."""
    x = x.ravel()
    left = np.sqrt(np.mean(x[x < 0] ** 2))
    right = np.sqrt(np.mean(x[x > 0] ** 2))
    g = left / right
    r = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
    r_norm = r * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = _GAM[np.argmin((_R_GAM - r_norm) ** 2)]
    k = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left * k, right * k


def _block_features(block: np.ndarray) -> list[float]:
    alpha, bl, br = _aggd(block)
    feats = [alpha, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # horizontal, vertical, two diagonals
        alpha, bl, br = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (br - bl) * gamma(2 / alpha) / gamma(1 / alpha)
        feats += [alpha, mean, bl, br]
    return feats


def niqe_gray(img: np.ndarray, weights_dir: str | None = None) -> float:
    """NIQE of one grayscale image with values in [0, 255] (float)."""
    mu_p, cov_p, window = load_pristine(weights_dir)
    h, w = img.shape
    nh, nw = h // BLOCK, w // BLOCK
    if nh < 1 or nw < 1:
        return float("nan")  # smaller than one 96x96 block: undefined
    img = img[: nh * BLOCK, : nw * BLOCK].astype(np.float64)
    per_scale = []
    for scale in (1, 2):
        mu = convolve(img, window, mode="nearest")
        sigma = np.sqrt(np.abs(convolve(img**2, window, mode="nearest") - mu**2))
        mscn = (img - mu) / (sigma + 1)
        b = BLOCK // scale
        per_scale.append(np.array([_block_features(mscn[i * b:(i + 1) * b, j * b:(j + 1) * b])
                                   for j in range(nw) for i in range(nh)]))
        if scale == 1:
            img = imresize(torch.from_numpy(img / 255.0)[None, None], 0.5)[0, 0].numpy() * 255.0
    feats = np.concatenate(per_scale, axis=1)
    mu_d = np.nanmean(feats, axis=0)
    clean = feats[~np.isnan(feats).any(axis=1)]
    cov_d = np.cov(clean, rowvar=False) if len(clean) > 1 else np.zeros_like(cov_p)
    diff = mu_p - mu_d
    return float(np.sqrt(diff @ np.linalg.pinv((cov_p + cov_d) / 2) @ diff.T).squeeze())


def niqe(x: torch.Tensor, *, crop_border: int = 0, weights_dir: str | None = None,
         luma: str = "yiq") -> torch.Tensor:
    """Per-image NIQE of NCHW RGB in [0, 1] on the luma rounded to uint8 levels. ``luma="yiq"``
    (full-range) is pyiqa's convention, which the SR papers' NIQE columns use."""
    from upstep.metrics.fidelity import LUMA

    y = torch.round(LUMA[luma](x.double().clamp(0, 1)) * 255)
    if crop_border:
        c = crop_border
        y = y[..., c:-c, c:-c]
    with warnings.catch_warnings():  # flat blocks give NaN fits; they are left out, as in BasicSR
        warnings.simplefilter("ignore", RuntimeWarning)
        return torch.tensor([niqe_gray(im[0].numpy(), weights_dir) for im in y], dtype=torch.float64)
