"""Check that no training image is also an evaluation image (near-duplicates by perceptual hash).

    upstep check-data [--data-root DIR] [--out docs/results/data_check]

Every image under ``<data_root>/train/`` is compared with every image of ``<data_root>/eval/<set>/``
(``hr/`` where the set has it, else ``lr/``), all pairs. Each image gets two thumbnail signatures
of its grey levels:

* a 64-bit DCT hash (pHash): resized to 32×32, 2-D DCT, the 8×8 lowest frequencies without the
  DC term compared with their median; pairs are compared by Hamming distance;
* a 16×16 thumbnail, mean removed and scaled to unit norm; pairs are compared by correlation.

A pair is reported when its hashes differ in at most ``--max-distance`` of 64 bits AND its
thumbnails correlate at least ``--min-correlation``. Both see the whole image at thumbnail scale,
so a copy survives JPEG re-encoding, resizing (an LR image matches its HR) and a crop of a few
per cent; neither survives a large crop, a flip or a strong colour change. Unrelated photos differ
in about 32 bits; a few flat, centred compositions come within 10 bits of each other, which is
why the correlation confirms each candidate. The report lists the closest cross pairs, so the
margin can be read.

Exit code 1 when a pair is found, 0 when none; ``--out`` writes ``data_check.json`` and
``data_check.md`` there.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from upstep.errors import UpstepError
from upstep.evaluate.sets import set_subfolder
from upstep.io import list_inputs

MAX_DISTANCE = 12
MIN_CORRELATION = 0.9


def _dct_matrix(n: int) -> np.ndarray:
    k, i = np.arange(n)[:, None], np.arange(n)[None, :]
    m = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


_DCT32 = _dct_matrix(32)


def _grey(image: Image.Image, size: int) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(image).convert("L").resize((size, size), Image.Resampling.BOX),
                      dtype=np.float64)


def phash(image: Image.Image) -> int:
    """64-bit DCT hash of ``image`` (any mode; EXIF orientation applied)."""
    coeffs = _DCT32 @ _grey(image, 32) @ _DCT32.T
    low = coeffs[:8, :8].flatten()[1:]                        # 63 lowest frequencies, DC left out
    bits = np.concatenate([[False], low > np.median(low)])
    return int("".join("1" if b else "0" for b in bits), 2)


def thumbnail(image: Image.Image) -> np.ndarray:
    """The 16×16 grey thumbnail as a unit vector with zero mean (a flat image gives zeros)."""
    t = _grey(image, 16).ravel()
    t -= t.mean()
    n = np.linalg.norm(t)
    return t / n if n > 1e-9 else t


def signature(image: Image.Image) -> tuple[int, np.ndarray]:
    return phash(image), thumbnail(image)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def signatures(folder: Path) -> dict[str, tuple[int, np.ndarray]]:
    """{path: signature} of every image under ``folder``; names a file PIL cannot read."""
    out = {}
    for p in list_inputs([folder], recursive=True):  # the image files the CLI reads, subfolders too
        try:
            with Image.open(p) as im:
                out[str(p)] = signature(im)
        except (OSError, ValueError) as e:
            raise UpstepError(f"{p}: cannot read as an image ({e})") from e
    return out


def eval_folders(root: Path) -> dict[str, Path]:
    """{set: its hr/ folder, or lr/ for a set without ground truth} under ``root/eval``."""
    out = {}
    for s in sorted(p for p in (root / "eval").iterdir() if p.is_dir()):
        out[s.name] = set_subfolder(s, "hr") or set_subfolder(s, "lr") or s
    return out


_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)


def hamming_matrix(a: list[int], b: list[int]) -> np.ndarray:
    """Hamming distance of every pair of 64-bit hashes (len(a) × len(b))."""
    xa = np.array(a, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    xb = np.array(b, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    return sum(_POPCOUNT[xa[:, None, i] ^ xb[None, :, i]].astype(np.int64) for i in range(8))


def check(train: dict, evals: dict[str, dict], max_distance: int = MAX_DISTANCE,
          min_correlation: float = MIN_CORRELATION, closest: int = 5) -> dict:
    """Near-duplicate pairs between the training signatures and each eval set's, and the
    ``closest`` cross pairs overall by hash distance and by thumbnail correlation (the margin)."""
    names = list(train)
    pairs, rows = [], []
    for s, sig in evals.items():
        if not sig or not train:
            continue
        evs = list(sig)
        d = hamming_matrix([h for h, _ in train.values()], [h for h, _ in sig.values()])
        c = np.stack([t for _, t in train.values()]) @ np.stack([t for _, t in sig.values()]).T

        def row(i, j):
            return {"train": names[i], "eval_set": s, "eval": evs[j], "distance": int(d[i, j]),
                    "correlation": round(float(c[i, j]), 4)}
        pairs += [row(i, j) for i, j in zip(*np.nonzero((d <= max_distance) & (c >= min_correlation)))]
        rows += [row(*np.unravel_index(k, d.shape)) for k in np.argsort(d, axis=None, kind="stable")[:closest]]
        rows += [row(*np.unravel_index(k, c.shape)) for k in np.argsort(-c, axis=None, kind="stable")[:closest]]
    by_distance = sorted(rows, key=lambda r: (r["distance"], -r["correlation"], r["train"]))[:closest]
    by_correlation = sorted(rows, key=lambda r: (-r["correlation"], r["distance"], r["train"]))[:closest]
    return {"max_distance": max_distance, "min_correlation": min_correlation, "train_images": len(train),
            "eval_images": {s: len(h) for s, h in evals.items()},
            "pairs": sorted(pairs, key=lambda r: (r["distance"], r["train"])),
            "closest_by_distance": by_distance, "closest_by_correlation": by_correlation}


def check_data(root: Path, max_distance: int = MAX_DISTANCE, min_correlation: float = MIN_CORRELATION,
               train_dir: Path | None = None) -> dict:
    """``train_dir``: a folder of one's own photos to check instead of ``root/train``."""
    train_dir = train_dir or root / "train"
    if not train_dir.is_dir():
        raise UpstepError(f"{train_dir}: not a folder" if train_dir != root / "train" else
                          f"{root}: no train/ folder (set UPSTEP_DATA or --data-root, or give your photos with --train)")
    if not (root / "eval").is_dir():
        raise UpstepError(f"{root}: no eval/ folder with the evaluation sets (set UPSTEP_DATA or --data-root)")
    train = signatures(train_dir)
    evals = {s: signatures(f) for s, f in eval_folders(root).items()}
    return {**check(train, evals, max_distance, min_correlation), "train_folder": str(train_dir)}


def report_md(result: dict, root: Path, prov: dict | None = None) -> str:
    from upstep.evaluate.report import md_table, provenance_md

    def table(rows: list[dict]) -> str:
        rel = lambda p: str(Path(p).relative_to(root)) if Path(p).is_relative_to(root) else p  # noqa: E731
        return md_table(["train", "eval image", "hash distance (bits)", "thumbnail correlation"],
                        [[rel(r["train"]), rel(r["eval"]), r["distance"], r["correlation"]] for r in rows])

    lines = ["# Training images vs evaluation images: near-duplicate check", ""]
    if prov:
        lines += [provenance_md(prov), ""]
    n_eval = sum(result["eval_images"].values())
    where = "train/" if Path(result.get("train_folder", root / "train")) == root / "train" else result["train_folder"]
    lines += [f"{result['train_images']} training images under `{where}` against {n_eval} evaluation images "
              f"({', '.join(f'{s} {n}' for s, n in result['eval_images'].items())}), every pair. A pair is reported "
              f"when the 64-bit DCT hashes of the grey thumbnails differ in at most {result['max_distance']} bits "
              f"and the 16×16 thumbnails correlate at least {result['min_correlation']:g} "
              "(`upstep.evaluate.datacheck`; `tests/test_datacheck.py` rebuilds Set5 `img_005` as BSDS500 train "
              "`302003.jpg` — resized, JPEG, cropped — and the check reports that pair).", "",
              f"**Near-duplicate pairs: {len(result['pairs'])}.**", ""]
    if result["pairs"]:
        lines += [table(result["pairs"]), ""]
    lines += ["Closest cross pairs by hash distance:", "", table(result["closest_by_distance"]), "",
              "Closest cross pairs by thumbnail correlation:", "", table(result["closest_by_correlation"]), ""]
    return "\n".join(lines)


def add_check_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", type=Path, default=None, help="folder holding train/ and eval/ (default: UPSTEP_DATA "
                   "or ../shared/data)")
    p.add_argument("--max-distance", type=int, default=MAX_DISTANCE,
                   help=f"report pairs whose 64-bit hashes differ in at most this many bits (default {MAX_DISTANCE})")
    p.add_argument("--min-correlation", type=float, default=MIN_CORRELATION,
                   help=f"... and whose 16x16 thumbnails correlate at least this much (default {MIN_CORRELATION})")
    p.add_argument("--train", type=Path, default=None,
                   help="a folder of your own training photos (subfolders included) to check against the evaluation "
                        "sets instead of the data root's train/")
    p.add_argument("--out", type=Path, default=None, help="also write data_check.json and data_check.md here")


def run_check_data(args) -> int:
    from upstep.paths import data_root

    if not 0 <= args.max_distance < 64:
        raise UpstepError(f"--max-distance must be 0..63, got {args.max_distance}")
    root = (args.data_root or data_root()).resolve()
    if not -1 <= args.min_correlation <= 1:
        raise UpstepError(f"--min-correlation must be in [-1, 1], got {args.min_correlation}")
    result = check_data(root, args.max_distance, args.min_correlation, args.train)
    for r in result["pairs"]:
        print(f"near-duplicate ({r['distance']} bits, correlation {r['correlation']:.3f}): {r['train']}  ~  {r['eval']}")
    print(f"{len(result['pairs'])} near-duplicate pairs between {result['train_images']} training images and "
          f"{sum(result['eval_images'].values())} evaluation images (at most {result['max_distance']} bits apart, "
          f"thumbnails correlating at least {result['min_correlation']:g})")
    if args.out:
        from upstep.evaluate.report import provenance, write_json

        prov = provenance()
        args.out.mkdir(parents=True, exist_ok=True)
        write_json(args.out / "data_check.json", {**result, "data_root": str(root), **prov})
        (args.out / "data_check.md").write_text(report_md(result, root, prov))
    return 1 if result["pairs"] else 0
