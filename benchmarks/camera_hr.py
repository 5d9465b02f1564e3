"""How soft is real-camera HR? Spectral band powers of HR images: realsr_canon's camera HR, the
other dev sets' HR, the training pool, and the training pool blurred by a Gaussian of σ HR pixels.

    python benchmarks/camera_hr.py            # writes docs/results/camera_hr/{results.json,results.md}

Per image: the luma of a centred 256² crop (images with a shorter side are skipped), mean removed,
Hann-windowed; its power spectrum averaged over three radial bands of spatial frequency f
(cycles/px): low [0.05, 0.125), mid [0.125, 0.25), high [0.25, 0.5). Reported per set: the
median over images of log10(mid / low) and log10(high / low), i.e. how much fine detail an HR
image carries relative to its coarse structure (independent of contrast). The training pool's rows
use up to ``--pool-images`` images per folder, in a fixed shuffled order (seed 0). This is what
``upstep.degrade.camera.camera_pair``'s HR blur (``SIGMA_HR``) is set from.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
import torch

CROP = 256
BANDS = {"low": (0.05, 0.125), "mid": (0.125, 0.25), "high": (0.25, 0.5)}


def band_logs(y: np.ndarray) -> tuple[float, float]:
    """(log10 mid/low, log10 high/low) band power of a 2-D luma array (module doc)."""
    y = y - y.mean()
    h, w = y.shape
    power = np.abs(np.fft.fft2(y * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    p = {k: power[(f >= lo) & (f < hi)].mean() for k, (lo, hi) in BANDS.items()}
    return float(np.log10(p["mid"] / p["low"])), float(np.log10(p["high"] / p["low"]))


def centre_crop(x: torch.Tensor) -> torch.Tensor | None:
    """The centred CROP x CROP window of a 1x3xHxW image, or None when it is smaller."""
    h, w = x.shape[-2:]
    if min(h, w) < CROP:
        return None
    y0, x0 = (h - CROP) // 2, (w - CROP) // 2
    return x[..., y0:y0 + CROP, x0:x0 + CROP]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """camera_pair's HR softening at a fixed ``sigma`` (``upstep.degrade.camera.soften``)."""
    from upstep.degrade.camera import soften

    return soften(x, torch.tensor([sigma]))


def summary(rows: list[tuple[float, float]]) -> dict:
    a = np.array(rows)
    return {"n": len(rows), "mid_low_median": float(np.median(a[:, 0])), "high_low_median": float(np.median(a[:, 1])),
            "high_low_p25": float(np.percentile(a[:, 1], 25)), "high_low_p75": float(np.percentile(a[:, 1], 75))}


def main(argv=None) -> int:
    from upstep.evaluate.report import provenance, provenance_md
    from upstep.evaluate.sets import open_set
    from upstep.io import LUMA, list_inputs, read_image, to_model_rgb
    from upstep.paths import data_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/results/camera_hr")
    ap.add_argument("--sets", default="realsr_canon,imagenet_valsr_resshift,bsd100,set14")
    ap.add_argument("--pool", default="imagenet_sample1000,bsds500_train,bsds500_test",
                    help="training-pool folders (under the data root's train/)")
    ap.add_argument("--pool-images", type=int, default=100)
    ap.add_argument("--sigmas", default="0.6,0.8,0.9,1.0,1.2", help="HR Gaussian blur widths (HR px) applied to the pool")
    a = ap.parse_args(argv)
    sigmas = [float(s) for s in a.sigmas.split(",")]

    def logs(x: torch.Tensor) -> tuple[float, float]:
        y = (x[0] * torch.tensor(LUMA).view(3, 1, 1)).sum(0)
        return band_logs(y.double().numpy())

    rows: dict[str, list] = {}
    for name in a.sets.split(","):
        s = open_set(name)
        crops = [centre_crop(s.load(it, 4)[1]) for it in s.items]
        rows[f"{name} HR"] = [logs(c) for c in crops if c is not None]
    pool = []
    for folder in a.pool.split(","):
        paths = sorted(list_inputs([data_root() / "train" / folder], recursive=True))
        random.Random(0).shuffle(paths)
        pool += [c for c in (centre_crop(to_model_rgb(read_image(p))[None]) for p in paths[: a.pool_images])
                 if c is not None]
    rows["training pool HR"] = [logs(c) for c in pool]
    for sg in sigmas:
        rows[f"training pool HR, Gaussian σ = {sg} px"] = [logs(gaussian_blur(c, sg)) for c in pool]

    prov = provenance(["python", "benchmarks/camera_hr.py", *(argv if argv is not None else sys.argv[1:])])
    res = {**prov, "crop": CROP, "bands": BANDS, "rows": {k: summary(v) for k, v in rows.items()}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = ["# Fine detail of HR images: band power relative to the low band (log10, median over images)", "",
          provenance_md(prov), "",
          f"Centred {CROP}² luma crops; bands in cycles/px: " + ", ".join(f"{k} {lo}–{hi}" for k, (lo, hi) in BANDS.items())
          + ". Lower = softer.", "",
          "| HR | images | mid / low | high / low | high / low, p25–p75 |", "|---|---|---|---|---|"]
    md += [f"| {k} | {r['n']} | {r['mid_low_median']:+.2f} | {r['high_low_median']:+.2f} | "
           f"{r['high_low_p25']:+.2f} to {r['high_low_p75']:+.2f} |" for k, r in res["rows"].items()]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
