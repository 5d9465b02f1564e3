"""How blurry is real-camera LR? Mean gradient magnitude of LR images relative to the MATLAB-bicubic
LR of the same HR, on realsr_canon's real camera pairs and for ``camera_blur`` at fixed blur widths.

    python benchmarks/camera_lr.py            # writes docs/results/camera_lr/{results.json,results.md}

The ratio is mean(|dy| + |dx|) of the RGB mean, LR over bicubic LR; one number per image, reported
as mean and 10th/50th/90th percentiles over the 50 pairs. ``camera_blur`` uses seed 0 per image.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from upstep.degrade import bicubic
from upstep.degrade.camera import camera_blur
from upstep.evaluate.sets import open_set


def gradient(x: torch.Tensor) -> float:
    y = x.mean(1)
    return float((y[:, 1:] - y[:, :-1]).abs().mean() + (y[:, :, 1:] - y[:, :, :-1]).abs().mean())


def summary(v: list[float]) -> dict:
    p10, p50, p90 = np.percentile(v, [10, 50, 90])
    return {"mean": float(np.mean(v)), "p10": float(p10), "p50": float(p50), "p90": float(p90), "n": len(v)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/results/camera_lr")
    ap.add_argument("--sigmas", default="0.3,0.45,0.6,0.8", help="camera_blur widths in LR pixels")
    a = ap.parse_args(argv)
    sigmas = [float(s) for s in a.sigmas.split(",")]
    pairs = open_set("realsr_canon")
    real, synth = [], {s: [] for s in sigmas}
    for item in pairs.items:
        lr, hr = pairs.load(item, 4)
        base = gradient(bicubic(hr, 4))
        real.append(gradient(lr) / base)
        for s in sigmas:
            synth[s].append(gradient(camera_blur(hr, 4, torch.Generator().manual_seed(0), sigma_lr=(s, s))) / base)
    from upstep.evaluate.report import provenance, provenance_md

    prov = provenance(["python", "benchmarks/camera_lr.py", *(argv if argv is not None else sys.argv[1:])])
    res = {**prov, "real_camera": summary(real), "camera_blur": {str(s): summary(v) for s, v in synth.items()}}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    rows = [("realsr_canon real LR", res["real_camera"])] + [(f"camera_blur σ = {s} LR px", res["camera_blur"][str(s)])
                                                             for s in sigmas]
    md = ["# Gradient of LR relative to bicubic LR of the same HR (realsr_canon, 50 pairs)", "",
          provenance_md(prov), "",
          "| LR | mean | p10 | p50 | p90 |", "|---|---|---|---|---|"]
    md += [f"| {name} | {r['mean']:.3f} | {r['p10']:.3f} | {r['p50']:.3f} | {r['p90']:.3f} |" for name, r in rows]
    (out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
