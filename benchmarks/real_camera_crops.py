"""Crops of real camera photos side by side (issue 29): LR, bicubic, upstep models, the GAN peers, HR.

    python benchmarks/real_camera_crops.py [--model NAME=FOLDER ...] [--out docs/results/real_camera]

Rows: a 48 x 48 LR window (192 x 192 output) of each of a few realsr_canon pairs and RealSet65
photos (no HR there), placed where the bicubic output has the most gradient energy (edges and
text, where the methods differ most). Writes crops_real_camera.png, which shows benchmark images:
it is generated, never committed (.gitignore), because the sets are not ours to redistribute.
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
WIN = 48


def _window(bic: torch.Tensor, scale: int) -> tuple[int, int]:
    """Top-left LR corner of the WIN x WIN window with the most bicubic gradient energy."""
    y = bic[0].mean(0)
    g = (y[1:, :-1] - y[:-1, :-1]).abs() + (y[:-1, 1:] - y[:-1, :-1]).abs()
    k = WIN * scale
    e = F.avg_pool2d(g[None, None], k, stride=scale)[0, 0]
    i = int(torch.argmax(e))
    return i // e.shape[1], i % e.shape[1]


def main(argv=None) -> int:
    from upstep.api import load
    from upstep.evaluate.sets import open_set
    from upstep.peers import available_peers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", default=[], help="NAME=FOLDER or a shipped model name")
    ap.add_argument("--peers", default="realesr-general-x4v3,realesrgan-x4plus")
    ap.add_argument("--out", default="docs/results/real_camera")
    a = ap.parse_args(argv)
    models = [m.split("=", 1) if "=" in m else (m, m) for m in (a.model or ["fidelity-x4", "default-x4"])]
    peers = {p.name: p for p in available_peers(4)}
    methods = [("bicubic", peers["bicubic"].upscale)]
    for name, path in models:
        up = load(path, device="cpu")
        methods.append((name, lambda lr, s, up=up: up.upscale_tensor(lr, steps=1, seed=0)))
    methods += [(p, peers[p].upscale) for p in a.peers.split(",") if p in peers]
    rows = []
    for set_name, names in (("realsr_canon", REALSR), ("realset65", REALSET)):
        s = open_set(set_name)
        for it in s.items:
            if it.name not in names:
                continue
            lr, hr = s.load(it, 4)
            lr = lr[..., :3, :, :]
            outs = {name: fn(lr, 4).clamp(0, 1) for name, fn in methods}
            y, x = _window(outs["bicubic"], 4)
            tiles = [F.interpolate(lr[..., y: y + WIN, x: x + WIN][..., :, :], scale_factor=4, mode="nearest")]
            tiles += [o[..., y * 4: (y + WIN) * 4, x * 4: (x + WIN) * 4] for o in outs.values()]
            tiles.append(hr[..., y * 4: (y + WIN) * 4, x * 4: (x + WIN) * 4] if hr is not None
                         else torch.ones_like(tiles[-1]))
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
    fig.savefig(out / "crops_real_camera.png", dpi=100)
    print("wrote", out / "crops_real_camera.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
