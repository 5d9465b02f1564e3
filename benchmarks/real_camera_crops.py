"""Crops of real camera photos side by side (issue 29): LR, bicubic, upstep models, the GAN peers, HR.

    python benchmarks/real_camera_crops.py [--scale 2|4|8] [--model NAME=FOLDER ...] [--out docs/results/real_camera]

Rows: a 192 x 192 output window (an LR window of 192 / scale) of each of a few realsr_canon pairs
and RealSet65 photos (no HR there), placed where the bicubic output has the most gradient energy
(edges and text, where the methods differ most). realsr_canon's input is always its own real
camera LR (``BenchmarkSet.load_real_lr``): at x2 against its HR halved (a real-camera x2 task),
at x8 halved once more against its HR (real-camera-like). RealSet65's real LR is upscaled at any
scale. Writes crops_real_camera.png (x4) or crops_real_camera_x2.png / _x8.png, which show benchmark
images: they are generated, never committed (.gitignore), because the sets are not ours to
redistribute.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REALSR = ("Canon_003_LR4", "Canon_012_LR4", "Canon_027_LR4", "Canon_041_LR4")
REALSET = ("oldphoto2", "Lincoln", "building", "comic1")
TILE = 192   # output pixels of one crop, at every scale
DEFAULT_MODELS = {2: ["default-x2"], 4: ["fidelity-x4", "default-x4"], 8: ["default-x8"]}
DEFAULT_PEERS = {2: "fsrcnn,espcn", 4: "realesr-general-x4v3,realesrgan-x4plus", 8: "lapsrn"}


def _window(bic: torch.Tensor, scale: int, win: int) -> tuple[int, int]:
    """Top-left LR corner of the win x win LR window with the most bicubic gradient energy."""
    y = bic[0].mean(0)
    g = (y[1:, :-1] - y[:-1, :-1]).abs() + (y[:-1, 1:] - y[:-1, :-1]).abs()
    k = win * scale
    e = F.avg_pool2d(g[None, None], k, stride=scale)[0, 0]
    i = int(torch.argmax(e))
    return i // e.shape[1], i % e.shape[1]


def crop_tiles(lr: torch.Tensor, outs: dict[str, torch.Tensor], hr: torch.Tensor | None,
               scale: int) -> tuple[tuple[int, int], list[torch.Tensor]]:
    """The LR window (of TILE / scale px, where ``outs["bicubic"]`` has the most gradient energy) and
    its TILE x TILE tiles: the LR enlarged by nearest neighbour, each output, the HR (white without one)."""
    win = TILE // scale
    y, x = _window(outs["bicubic"], scale, win)
    crop = (..., slice(y * scale, (y + win) * scale), slice(x * scale, (x + win) * scale))
    tiles = [F.interpolate(lr[..., y: y + win, x: x + win], scale_factor=scale, mode="nearest")]
    tiles += [o[crop] for o in outs.values()]
    tiles.append(hr[crop] if hr is not None else torch.ones_like(tiles[-1]))
    return (y, x), tiles


def main(argv=None) -> int:
    from upstep.api import load
    from upstep.evaluate.sets import open_set
    from upstep.peers import available_peers

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=4, choices=sorted(DEFAULT_MODELS))
    ap.add_argument("--model", action="append", default=[],
                    help="NAME=FOLDER or a shipped model name (default: the shipped models of --scale)")
    ap.add_argument("--peers", default=None, help="comma-separated peers (default: the usual ones of --scale)")
    ap.add_argument("--out", default="docs/results/real_camera")
    a = ap.parse_args(argv)
    scale = a.scale
    models = [m.split("=", 1) if "=" in m else (m, m) for m in (a.model or DEFAULT_MODELS[scale])]
    peers = {p.name: p for p in available_peers(scale)}
    methods = [("bicubic", peers["bicubic"].upscale)]
    for name, path in models:
        up = load(path, device="cpu")
        if up.scale != scale:
            ap.error(f"model {name} is x{up.scale}, not x{scale}; give --scale {up.scale} or a x{scale} model")
        methods.append((name, lambda lr, s, up=up: up.upscale_tensor(lr, steps=1, seed=0)))
    methods += [(p, peers[p].upscale) for p in (a.peers or DEFAULT_PEERS[scale]).split(",") if p in peers]
    rows = []
    for set_name, names in (("realsr_canon", REALSR), ("realset65", REALSET)):
        s = open_set(set_name)
        for it in s.items:
            if it.name not in names:
                continue
            lr, hr = s.load_real_lr(it, scale) if it.hr_path is not None else (s.load(it, 4)[0], None)
            lr = lr[..., :3, :, :]
            outs = {name: fn(lr, scale).clamp(0, 1) for name, fn in methods}
            (y, x), tiles = crop_tiles(lr, outs, hr, scale)
            rows.append((f"{set_name}/{it.name}", tiles))
            print(set_name, it.name, "window", y, x, flush=True)
    labels = ["LR"] + [n for n, _ in methods] + ["HR"]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), len(labels), figsize=(1.9 * len(labels), 2.0 * len(rows)))
    for r, (title, tiles) in enumerate(rows):
        for c, t in enumerate(tiles):
            ax = axes[r][c]
            ax.imshow(np.clip(t[0].permute(1, 2, 0).numpy(), 0, 1), interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(title, fontsize=6)
    fig.tight_layout()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "crops_real_camera.png" if scale == 4 else f"crops_real_camera_x{scale}.png"
    fig.savefig(out / name, dpi=100)
    print("wrote", out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
