"""Checkerboard check: how much of each method's output energy sits on the 4x4 grid frequencies
(``upstep.metrics.periodic.grid_energy``), relative to the HR image's own, on a benchmark set.
A ratio near or below 1 means no 4x4-periodic component beyond what the photo has; the
pixel-unshuffle latent's failure mode under perceptual/adversarial training shows as a ratio > 1.

    python benchmarks/grid_energy.py --models default-x4,runs/perceptual_x4_small/model \\
        --peers realesr-general-x4v3 --set imagenet_valsr_resshift --out docs/results/perceptual_x4_probe
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import upstep
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.evaluate.sets import open_set
from upstep.metrics.periodic import grid_energy
from upstep.peers import available_peers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="default-x4", help="comma-separated shipped names or model folders")
    ap.add_argument("--peers", default="", help="comma-separated peer names (bicubic is always included)")
    ap.add_argument("--set", default="imagenet_valsr_resshift")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    bset = open_set(args.set)
    items = bset.items[: args.limit] if args.limit else bset.items
    methods = {}
    for m in [m for m in args.models.split(",") if m]:
        up = upstep.load(m, device="cpu")
        methods[m] = lambda lr, up=up: up.upscale_tensor(lr)
    wanted = {"bicubic", *[p for p in args.peers.split(",") if p]}
    for peer in available_peers(4):
        if peer.name in wanted:
            methods[peer.name] = lambda lr, peer=peer: peer.upscale(lr, 4)
    ratios = {name: [] for name in methods}
    hr_energy = []
    for item in items:
        lr, hr = bset.load(item, 4)
        h, w = (hr.shape[-2] // 4) * 4, (hr.shape[-1] // 4) * 4
        e_hr = float(grid_energy(hr[..., :h, :w]))
        hr_energy.append(e_hr)
        for name, fn in methods.items():
            sr = fn(lr).clamp(0, 1)
            ratios[name].append(float(grid_energy(sr[..., :h, :w])) / max(e_hr, 1e-12))
    mean = {n: sum(v) / len(v) for n, v in ratios.items()}
    worst = {n: max(v) for n, v in ratios.items()}
    result = {"set": args.set, "images": len(items), "hr_grid_energy_mean": sum(hr_energy) / len(hr_energy),
              "ratio_mean": mean, "ratio_max": worst, **provenance()}
    out = Path(args.out)
    write_json(out / "grid_energy.json", result)
    rows = [[n, mean[n], worst[n]] for n in methods]
    md = "\n".join(["# 4x4-grid energy relative to the HR image", "", provenance_md(result), "",
                    f"{args.set}, {len(items)} images, x4. Fraction of the luma spectrum's non-DC energy at the "
                    "4x4 grid frequencies, output / HR (mean and worst image).", "",
                    md_table(["method", "ratio, mean", "ratio, worst image"], rows), ""])
    (out / "grid_energy.md").write_text(md)
    print(md)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
