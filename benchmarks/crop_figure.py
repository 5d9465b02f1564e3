"""README figure: x4 crops of a public-domain photo that no upstep model was trained on.

The photo is SciPy's raccoon face (``scipy.misc.face``; "raccoon-procyon-lotor.jpg at
http://www.public-domain-image.com", says SciPy's docstring), shipped as ``scipy/misc/face.dat``
in SciPy wheels before 1.10. It is not in ``../shared/data`` (the training pool holds other
wheels' images). Get it once, offline afterwards:

    pip download --no-deps --only-binary=:all: scipy==1.9.3 --python-version 3.11 \\
        --platform manylinux2014_x86_64 -d /tmp/scipy && unzip -o /tmp/scipy/scipy-*.whl scipy/misc/face.dat -d /tmp/scipy
    python benchmarks/crop_figure.py --face /tmp/scipy/scipy/misc/face.dat

Two LR versions of the 1024x768 photo: MATLAB bicubic x4, and the Real-ESRGAN second-order
degradation (seed 0). Rows: two crops of each; columns: LR (nearest), bicubic, the given upstep
models (1 step), the given peers, HR. Writes ``docs/figures/crops_x4.png`` and, beside it,
``crops_x4.json`` with PSNR-Y and LPIPS-alex of every method on the whole image (one image: an
illustration, not a benchmark).
"""
from __future__ import annotations

import argparse
import bz2
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch

from upstep.api import load
from upstep.degrade import degrade
from upstep.evaluate.report import provenance, write_json
from upstep.metrics import measure
from upstep.peers import get_peer

FACE_SHA256 = "9d8b0b4d081313e2b485748c770472e5a95ed1738146883d84c7030493e82886"   # scipy 1.9.3
OUT = Path(__file__).resolve().parents[1] / "docs" / "figures"
CROPS = [(250, 520, 160), (120, 160, 160)]   # (y, x, size) in HR pixels: eye and whiskers, fur


def read_face(path: Path) -> torch.Tensor:
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != FACE_SHA256:
        sys.exit(f"{path}: SHA-256 {digest} is not SciPy 1.9.3's face.dat ({FACE_SHA256}); "
                 "get it with the command in this script's docstring")
    arr = np.frombuffer(bz2.decompress(raw), dtype=np.uint8).reshape(768, 1024, 3)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float() / 255


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--face", required=True, help="scipy/misc/face.dat from a SciPy < 1.10 wheel")
    ap.add_argument("--models", default="fidelity-x4,default-x4")
    ap.add_argument("--peers", default="realesr-general-x4v3")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    from PIL import Image, ImageDraw

    hr = read_face(Path(args.face))
    lrs = {"bicubic LR": degrade(hr, 4, "bicubic"),
           "Real-ESRGAN-degraded LR": degrade(hr, 4, "realesrgan", generator=torch.Generator().manual_seed(0))}
    methods = {"bicubic": lambda lr: get_peer("bicubic", 4).upscale(lr, 4)}
    for name in [m for m in args.models.split(",") if m]:
        up = load(name, dtype="float32")   # as `upstep eval` measures
        methods[name] = lambda lr, up=up: up.upscale_tensor(lr, steps=1, seed=0)
    for name in [p for p in args.peers.split(",") if p]:
        peer = get_peer(name, 4)
        methods[name] = lambda lr, peer=peer: peer.upscale(lr, 4)

    scores, rows = {}, []
    for lr_name, lr in lrs.items():
        outs = {"LR": torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest")}
        for m, fn in methods.items():
            with torch.no_grad():
                outs[m] = (fn(lr).float().clamp(0, 1) * 255).round() / 255
            scores[f"{lr_name} / {m}"] = {k: v[0] for k, v in measure(outs[m], hr, ["psnr", "lpips"], crop_border=4).items()}
        outs["HR"] = hr
        for y, x, s in CROPS:
            rows.append(torch.cat([o[0, :, y:y + s, x:x + s] for o in outs.values()], dim=2))
    grid = (torch.cat(rows, dim=1).clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    header = 18
    canvas = Image.new("RGB", (grid.shape[1], grid.shape[0] + header), "white")
    canvas.paste(Image.fromarray(grid), (0, header))
    draw = ImageDraw.Draw(canvas)
    for i, label in enumerate(["LR"] + list(methods) + ["HR"]):
        draw.text((i * CROPS[0][2] + 3, 3), label, fill="black")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    canvas.save(out / "crops_x4.png")
    write_json(out / "crops_x4.json", {
        "image": "scipy.misc.face (public domain), 1024x768, SHA-256 of face.dat " + FACE_SHA256,
        "rows": [f"{lr} crop {c}" for lr in lrs for c in CROPS], "columns": ["LR"] + list(methods) + ["HR"],
        "whole_image_scores": scores, **provenance(sys.argv)})
    for k, v in scores.items():
        print(f"{k:55s} PSNR-Y {v['psnr']:.2f}  LPIPS {v['lpips']:.4f}")


if __name__ == "__main__":
    main()
