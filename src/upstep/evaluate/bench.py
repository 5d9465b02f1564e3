"""Speed and memory benchmark: the model at 1 step vs the same model at more steps, bicubic
and the peers, on square random-texture inputs, all in one run on one machine.

``upstep bench --model default-x4 --sizes 128,256,512 --steps 1,4,15,50 --memory-sizes 512,1024``

Latency: median over ``--repeats`` timed runs after one warm-up (no warm-up for runs over 10 s). Peak memory: each
configuration runs once more in a fresh process (so no memory freed by an earlier run can be
reused and hide the cost): on CPU the RSS sampled every 2 ms during the call minus the RSS just
before it (what the call adds); on CUDA ``max_memory_allocated`` minus the allocation before. A configuration whose
estimated time (model@1 latency x steps) exceeds ``--budget-s`` is skipped and recorded as
skipped, never extrapolated into a number. The memory section runs 1 step tiled (the default
pipeline) and untiled (one tile covering the image) on growing inputs: tiling keeps the
network's working memory set by the tile, so only the image buffers grow.
"""
from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from pathlib import Path

import torch

from upstep.evaluate.report import md_table, provenance, provenance_md, write_json


class PeakMemory:
    """Context manager measuring the peak memory a block adds (bytes) on ``device``."""

    def __init__(self, device: torch.device, interval: float = 0.002):
        self.device, self.interval, self.peak = device, interval, 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self):
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = self._max = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self._max = max(self._max, self._rss())
            self.peak = self._max - self._base
        return False


def _texture(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (not white noise, which no SR model sees)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, max(2, size // 8), max(2, size // 8), generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _time(fn, repeats: int, device, warmup: bool = True) -> tuple[float, list[float]]:
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    if warmup:  # skipped only for runs long enough (> 10 s) that start-up costs are noise
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _child_peak(model: str, device: str, dtype: str, tile: int, method: str, size: int, weights_dir) -> dict:
    """Runs in a fresh process: one call of ``method`` on a ``size``² input; returns its peak."""
    torch.set_num_threads(int(os.environ.get("UPSTEP_BENCH_THREADS", torch.get_num_threads())))
    from upstep.api import load
    from upstep.peers import get_peer

    up = load(model, device=device, dtype=dtype, tile=tile)
    lr = _texture(size)
    if method.startswith("model@"):
        fn = lambda: up.upscale_tensor(lr, steps=int(method[6:]))  # noqa: E731
    else:
        peer = get_peer(method, up.scale, weights_dir=weights_dir)
        fn = lambda: peer.upscale(lr, up.scale)  # noqa: E731
    with PeakMemory(up.device if method.startswith("model@") else torch.device("cpu")) as pm:
        out = fn()
    return {"peak_mem_mb": pm.peak / 2**20, "output_numel": out.numel()}


def peak_in_fresh_process(**kw) -> dict:
    import multiprocessing as mp

    os.environ["UPSTEP_BENCH_THREADS"] = str(torch.get_num_threads())
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_child_peak, kwds=kw)


def add_bench_arguments(p) -> None:
    p.add_argument("--model", default="default-x4")
    p.add_argument("--sizes", default="128,256,512", help="square LR input sizes for latency")
    p.add_argument("--steps", default="1,4,15,50", help="DDIM steps to time (1 is the reference)")
    p.add_argument("--memory-sizes", default="256,512,1024", help="LR sizes for the tiled-vs-untiled memory run")
    p.add_argument("--untiled-max", type=int, default=512, help="largest LR size run untiled")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--budget-s", type=float, default=300.0, help="skip a configuration estimated slower than this")
    p.add_argument("--peers", default="all", help="'all', 'none' or comma-separated names")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--tile", type=int, default=128)
    p.add_argument("--out", "-o", default="docs/results/bench")
    p.add_argument("--weights-dir", default=None)


def bench(args, command=None) -> dict:
    from upstep.api import load
    from upstep.peers import available_peers

    up = load(args.model, device=args.device, dtype=args.dtype, tile=args.tile)
    dev, s = up.device, up.scale
    sizes = [int(v) for v in args.sizes.split(",") if v]
    steps = sorted({int(v) for v in args.steps.split(",") if v} | {1})
    peers = [p for p in available_peers(s, weights_dir=args.weights_dir)
             if p.name == "bicubic" or args.peers == "all" or p.name in args.peers.split(",")]
    child = {"model": args.model, "device": args.device, "dtype": args.dtype, "tile": args.tile,
             "weights_dir": args.weights_dir}
    latency = []
    for size in sizes:
        lr = _texture(size)
        mp = (size * s) ** 2 / 1e6
        ref = None
        for n in steps:
            row = {"size": size, "method": f"model@{n}"}
            if ref is not None and ref * n > args.budget_s:
                row["skipped"] = f"estimated {ref * n:.0f} s per run > --budget-s {args.budget_s:.0f}"
            else:
                long_run = ref is not None and ref * n > 10
                med, times = _time(lambda: up.upscale_tensor(lr, steps=n), args.repeats, dev, warmup=not long_run)
                row.update(median_s=med, runs_s=times, mp_per_s=mp / med)
                # peak memory does not grow with the number of steps (same tiles, same buffers);
                # measured for every run short enough to repeat once more in a fresh process
                row["peak_mem_mb"] = (float("nan") if long_run else
                                      peak_in_fresh_process(method=f"model@{n}", size=size, **child)["peak_mem_mb"])
                if n == 1:
                    ref = med
            latency.append(row)
            print(row)
        for peer in peers:
            med, times = _time(lambda: peer.upscale(lr, s), args.repeats, torch.device("cpu"))
            row = {"size": size, "method": peer.name, "median_s": med, "runs_s": times, "mp_per_s": mp / med,
                   "peak_mem_mb": peak_in_fresh_process(method=peer.name, size=size, **child)["peak_mem_mb"]}
            latency.append(row)
            print(row)
        for row in latency:
            if row["size"] == size and ref and "median_s" in row:
                row["time_vs_model1"] = row["median_s"] / ref
    memory = []
    for size in [int(v) for v in args.memory_sizes.split(",") if v]:
        lr = _texture(size)
        for tiled in (True, False):
            if not tiled and size > args.untiled_max:
                memory.append({"size": size, "tiled": False, "skipped": f"untiled above {args.untiled_max}"})
                continue
            t0 = time.perf_counter()
            peak = peak_in_fresh_process(method="model@1", size=size, **{**child, "tile": args.tile if tiled else size})
            secs = time.perf_counter() - t0
            f = up.model.autoencoder.factor
            # input, bicubic upsample, output, blend accumulator (3 ch each) and the noise latent
            buffers = (size * size * 3 + 3 * peak["output_numel"]
                       + up.model.unet.latent_channels * peak["output_numel"] // 3 // f**2) * 4
            memory.append({"size": size, "tiled": tiled, "seconds_incl_process_start": secs,
                           "peak_mem_mb": peak["peak_mem_mb"], "image_buffers_mb": buffers / 2**20,
                           "working_mem_mb": max(0.0, peak["peak_mem_mb"] * 2**20 - buffers) / 2**20})
            print(memory[-1])
    return {"model": args.model, "scale": s, "device": str(dev), "dtype": args.dtype, "tile_lr_px": args.tile,
            "repeats": args.repeats, **provenance(command), "latency": latency, "memory": memory}


def _markdown(r: dict) -> str:
    rows = [[x["size"], x["method"]] + ([x["median_s"], x.get("time_vs_model1", float("nan")), x["mp_per_s"],
                                         x["peak_mem_mb"]] if "median_s" in x else ["skipped: " + x["skipped"], "", "", ""])
            for x in r["latency"]]
    mem = [[x["size"], "tiled" if x["tiled"] else "untiled"] + ([x["peak_mem_mb"], x["image_buffers_mb"],
                                                                x["working_mem_mb"]]
                                                               if "peak_mem_mb" in x else ["skipped", "", ""])
           for x in r["memory"]]
    return "\n".join([
        f"# Speed and memory of `{r['model']}` (x{r['scale']}, {r['device']}, {r['dtype']})", "",
        provenance_md(r), "",
        f"Median of {r['repeats']} runs after a warm-up (none for runs over 10 s; their peak memory, n/a, is not re-measured). `time vs model@1`: ratio to the 1-step model at the "
        "same size, measured in this run. Peak memory: what one call adds, measured in a fresh process (RSS on CPU).", "",
        md_table(["LR size", "method", "median s", "time vs model@1", "output MP/s", "peak MB"], rows), "",
        "## Memory with growing images (1 step)", "",
        "Image buffers: LR input, bicubic upsample, output, blend accumulator and the noise latent (float32); "
        "working memory: "
        "peak minus those buffers — what the network needs, set by the tile for the tiled pipeline.", "",
        md_table(["LR size", "pipeline", "peak MB", "image buffers MB", "working MB"], mem), ""])


def run_bench(args) -> int:
    import sys

    r = bench(args, command=sys.argv)
    out = Path(args.out)
    write_json(out / "bench.json", r)
    (out / "bench.md").write_text(_markdown(r))
    _plot(r, out / "bench.png")
    print(_markdown(r))
    print(f"results written to {out}/ (bench.json, bench.md, bench.png)")
    return 0


def _plot(r: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    methods = list(dict.fromkeys(x["method"] for x in r["latency"]))
    for m in methods:
        pts = [(x["size"], x["median_s"]) for x in r["latency"] if x["method"] == m and "median_s" in x]
        if pts:
            a.plot(*zip(*pts), "o-", label=m)
    a.set_xscale("log", base=2), a.set_yscale("log"), a.set_xlabel("LR size (px)"), a.set_ylabel("median s")
    a.legend(fontsize=7), a.set_title("latency")
    for tiled in (True, False):
        pts = [(x["size"], x["peak_mem_mb"]) for x in r["memory"] if x["tiled"] == tiled and "peak_mem_mb" in x]
        if pts:
            b.plot(*zip(*pts), "o-", label="tiled" if tiled else "untiled")
        pts = [(x["size"], x["working_mem_mb"]) for x in r["memory"] if x["tiled"] == tiled and "peak_mem_mb" in x]
        if pts:
            b.plot(*zip(*pts), "x--", label=("tiled" if tiled else "untiled") + " working")
    b.set_xscale("log", base=2), b.set_xlabel("LR size (px)"), b.set_ylabel("peak MB"), b.legend(fontsize=7)
    b.set_title("peak memory, 1 step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
