"""make an HR/LR training or evaluation set: OUT/HR/<name>.png and OUT/LR/<name>.png

``upstep degrade HR_DIR -o OUT --scale 4 --pipeline realesrgan --seed 0``

Each image gets its own generator, seeded from (seed, file name relative to its input folder)
with a stable hash (CRC-32), so a file's LR does not depend on which other files are in the
batch or on their order, and the same seed writes byte-identical PNGs.
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from upstep.errors import UpstepError


def add_degrade_arguments(parser: argparse.ArgumentParser) -> None:
    from upstep.degrade import known_pipelines

    parser.add_argument("inputs", nargs="+", help="HR image files or folders")
    parser.add_argument("-o", "--output", required=True, help="output folder (gets HR/ and LR/)")
    parser.add_argument("--scale", type=int, choices=(2, 4, 8), default=4)
    parser.add_argument("--pipeline", default="realesrgan", choices=known_pipelines(),
                        help="degradation (default: realesrgan); camera_pair also softens the HR it writes")
    parser.add_argument("--seed", type=int, default=0, help="base seed; each file's seed also hashes its name")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true")


def image_seed(seed: int, rel_name: str) -> int:
    """Stable per-file seed: CRC-32 of ``"<seed>/<relative name>"`` (not Python's salted ``hash``)."""
    return zlib.crc32(f"{seed}/{rel_name}".encode("utf-8"))


def _relative_inputs(inputs: list[str]) -> list[tuple[Path, str]]:
    """(path, name relative to its input folder, or the bare file name), sorted by that name."""
    from upstep.io import list_inputs

    items: list[tuple[Path, str]] = []
    for raw in inputs:
        root = Path(raw)
        for path in list_inputs([root]):
            rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
            items.append((path, rel))
    return sorted(items, key=lambda it: (it[1], str(it[0])))


def _to_pil(x: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> 8-bit RGB."""
    arr = np.round(x.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def run_degrade(args) -> int:
    import upstep.io as uio
    from upstep.degrade import degrade

    items = _relative_inputs(args.inputs)
    if not items:
        raise UpstepError(f"no images found in {', '.join(args.inputs)}")
    out = Path(args.output)
    hr_dir, lr_dir = out / "HR", out / "LR"
    # two inputs with the same stem would write the same output: refuse those, not the batch
    stems: dict[str, int] = {}
    for _, rel in items:
        stem = Path(rel).stem
        stems[stem] = stems.get(stem, 0) + 1

    def one(item: tuple[Path, str]) -> tuple[Path, Path]:
        path, rel = item
        stem = Path(rel).stem
        if stems[stem] > 1:
            raise ValueError(f"{path}: another input also has the name {stem!r}; outputs would collide")
        hr_dest, lr_dest = hr_dir / f"{stem}.png", lr_dir / f"{stem}.png"
        for dest in (hr_dest, lr_dest):
            if dest.exists() and not args.overwrite:
                raise uio.OutputExistsError(f"{dest}: exists; pass --overwrite to replace it")
        hr = uio.to_model_rgb(uio.read_image(path))
        h, w = hr.shape[-2:]
        if h < args.scale or w < args.scale:
            raise ValueError(f"{path}: {w}x{h} is smaller than the scale x{args.scale}")
        hr = hr[:, : h - h % args.scale, : w - w % args.scale]
        g = torch.Generator().manual_seed(image_seed(args.seed, rel))
        hr, lr = (x[0] for x in degrade(hr[None], args.scale, args.pipeline, generator=g, with_target=True))
        uio.write_image(_to_pil(hr), hr_dest, overwrite=args.overwrite, inputs=[path])
        uio.write_image(_to_pil(lr), lr_dest, overwrite=args.overwrite, inputs=[path])
        return hr_dest, lr_dest

    report = uio.run_batch(items, one, progress=not args.no_progress)
    n_ok = len(report.ok)
    print(f"wrote {n_ok} HR/LR pair{'s' if n_ok != 1 else ''} (x{args.scale}, {args.pipeline}, seed {args.seed}) "
          f"to {hr_dir} and {lr_dir}")
    if report.failed:
        report.failed = [(path, reason) for (path, _), reason in report.failed]
        print(report.summary(), file=sys.stderr)
    return report.exit_code
