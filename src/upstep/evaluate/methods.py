"""Evaluate named methods (any callables LR -> SR) on benchmark sets, with ``upstep eval``'s records.

``upstep eval`` (``runner.evaluate``) evaluates one model at several step counts beside the peers.
Benchmarks that compare another knob (a strength, an output size, a downsampling filter) give
their methods here and get what ``upstep eval`` writes: the same sets and LR (``sets.open_set``,
``BenchmarkSet.load``: the set's own x4 LR, MATLAB bicubic of the HR at other scales), the same
metrics (``upstep.metrics.measure``: uint8-quantised, Y-channel PSNR with ``scale`` px border
cropped, LPIPS-alex), the same per-image records (``records.jsonl``, read back by
``ablation.per_image`` and judged by ``ablation.paired_claim``) and the same per-set means.
Records resume; a changed ``stamp`` (e.g. the models' hashes) starts afresh.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from upstep.errors import UpstepError
from upstep.evaluate.runner import _load_records, _summarise
from upstep.evaluate.sets import open_set
from upstep.metrics import available_metrics, measure

Method = Callable[[torch.Tensor], torch.Tensor]  # LR 1x3xhxw in [0, 1] -> SR 1x3xHxW in [0, 1]


def evaluate_methods(methods: dict[str, Method], sets: list[str], scale: int, out: Path, *,
                     metrics: tuple[str, ...] = ("psnr", "lpips"), limit: int = 0, data_root=None,
                     weights_dir=None, stamp: str = "", progress: bool = True) -> dict:
    """Run every method on every image of ``sets`` at ``scale``; returns ``{"sets": {set: {"paired",
    "images", "methods": {method: {"images", "median_seconds", <metric means>}}}}, "failed_images"}``.
    Methods are run in the order given, one image at a time, so a method may reuse an earlier one's
    output for the same LR tensor (its ``seconds`` then exclude that work)."""
    ok, missing = available_metrics(weights_dir)
    for m in metrics:
        if m not in ok:
            raise UpstepError(f"metric {m!r} is unavailable: {missing.get(m, 'unknown metric')}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rec_path, stamp_path = out / "records.jsonl", out / "stamp.txt"
    if rec_path.exists() and (not stamp_path.is_file() or stamp_path.read_text().strip() != stamp):
        rec_path.unlink()  # made by other models or settings
    stamp_path.write_text(stamp + "\n")
    done = _load_records(rec_path)
    opened = [open_set(s, Path(data_root) if data_root else None) for s in sets]
    for b in opened:
        if not b.paired:
            raise UpstepError(f"benchmark set {b.name} has no HR images; these benchmarks need paired sets")
    total = sum(min(limit, len(b.items)) if limit else len(b.items) for b in opened) * len(methods)
    bar = tqdm(total=total, desc="eval", disable=not progress)
    failed: list[dict] = []
    with rec_path.open("a") as rec_file:
        for bset in opened:
            for item in bset.items[:limit] if limit else bset.items:
                todo = [m for m in methods if (bset.name, m, item.name) not in done]
                bar.update(len(methods) - len(todo))
                if not todo:
                    continue
                try:
                    lr, hr = bset.load(item, scale)
                except UpstepError as e:
                    failed.append({"set": bset.name, "image": item.name, "error": str(e)})
                    bar.update(len(todo))
                    continue
                for meth in todo:
                    t0 = time.perf_counter()
                    sr = methods[meth](lr)
                    seconds = time.perf_counter() - t0
                    sr = sr[..., : hr.shape[-2], : hr.shape[-1]]
                    vals = measure(sr, hr, list(metrics), crop_border=scale, weights_dir=weights_dir)
                    rec = {"set": bset.name, "method": meth, "image": item.name, "seconds": seconds,
                           "lr_size": list(lr.shape[-2:]), **{k: v[0] for k, v in vals.items()}}
                    rec_file.write(json.dumps(rec) + "\n")
                    rec_file.flush()
                    done[(bset.name, meth, item.name)] = rec
                    bar.update(1)
    bar.close()
    return {"sets": _summarise(done, opened, methods, list(metrics), limit), "failed_images": failed}


def last_output(fn: Method) -> Method:
    """``fn`` remembering its output for the LR tensor it saw last: methods that post-process one
    network output several ways (e.g. downsampling filters) run the network once per image."""
    memo: dict = {}

    def run(lr: torch.Tensor) -> torch.Tensor:
        if memo.get("lr") is not lr:
            memo["lr"], memo["sr"] = lr, fn(lr)
        return memo["sr"]
    return run


# ---- what the method benchmarks (benchmarks/strength_curve.py, scale_x3.py) share --------------
def add_arguments(ap, sets: str, out: Path) -> None:
    """The options every method benchmark takes: sets, image limit, results folder, data and weights."""
    ap.add_argument("--sets", default=sets)
    ap.add_argument("--limit", type=int, default=0, help="first N images per set (0 = all)")
    ap.add_argument("--out", default=str(out))
    ap.add_argument("--data-root", default=None, help="folder holding eval/<set> (default ../shared/data)")
    ap.add_argument("--weights-dir", default=None, help="offline metric weights (default ../shared/weights)")
    ap.add_argument("--no-progress", action="store_true")


def evaluate_from_args(a, methods: dict[str, Method], scale: int, stamp: str, metrics: tuple[str, ...]) -> dict:
    """``evaluate_methods`` with the options of ``add_arguments``."""
    sets = [s.strip() for s in a.sets.split(",") if s.strip()]
    return evaluate_methods(methods, sets, scale, Path(a.out), metrics=metrics, limit=a.limit, data_root=a.data_root,
                            weights_dir=a.weights_dir, stamp=stamp, progress=not a.no_progress)


def file_stamp(*paths: Path) -> str:
    """The SHA-1 of each file (``ablation``'s model stamp): the models a benchmark's records were made with."""
    from upstep.evaluate.ablation import _sha1

    return " ".join(_sha1(p) for p in paths)


def write_report(out: Path, res: dict, markdown: str, figure: Callable, png: str) -> None:
    """``results.json``, ``results.md`` and the plot ``png`` (``figure(plt, res)`` returns the
    matplotlib figure) into ``out``; prints the markdown."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from upstep.evaluate.report import write_json

    write_json(out / "results.json", res)
    (out / "results.md").write_text(markdown + "\n")
    fig = figure(plt, res)
    fig.tight_layout()
    fig.savefig(out / png, dpi=100)
    plt.close(fig)
    print(markdown)
