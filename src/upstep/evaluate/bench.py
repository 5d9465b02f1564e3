"""Speed and memory benchmark: the model's default path at 1 step, the same model at more steps and
in float32, bicubic and the peers, on square random-texture inputs, all in one run on one machine.

``upstep bench --model default-x4``  (``--quick``: 128² and 512², 1 step, a few minutes on 2 cores)

Timing (what makes the numbers checkable):
* every method runs once untimed (its warm-up; model@N shares model@1's tiles and kernels), then
  the methods are timed **round-robin** (one run of each in turn, ``--repeats`` rounds), so a
  slow spell of a shared machine hits all of them alike; each row gives the median and the
  min–max of its runs. A configuration whose estimated time (model@1 x steps; a method's time at
  the previous size x the area ratio) exceeds ``--budget-s`` is recorded as skipped, never
  extrapolated into a number.
* each torch model's multiply-accumulates are counted from its layers' shapes (forward hooks on
  every Conv2d / ConvTranspose2d / Linear call and the attention products, during the untimed
  run) for the input as run —
  tile overlaps included — so ``GFLOP/s = 2 x MACs / median s`` can be set against a float32 and
  a bf16 matmul peak measured in the same run, at its start and end. A row more than 10 % above
  that peak (a large matmul is not a hard ceiling for a convolution) is flagged implausible.
  OpenCV peers run outside torch: their MACs are not counted.
* the machine is recorded: CPU model, the flags that decide speed (AVX-512, bf16, AMX), torch
  threads, torch and oneDNN versions, load average at start and end.

Peak memory: each configuration runs once more in a fresh process (so no memory freed by an
earlier run can be reused and hide the cost): on CPU the RSS sampled every 2 ms during the call
minus the RSS just before it; on CUDA ``max_memory_allocated`` minus the allocation before. The
memory section runs 1 step with the default (auto) tiling and untiled on growing inputs: tiling
keeps the network's working memory bounded, so only the image buffers grow.
"""
from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from pathlib import Path

import torch
from torch import nn

from upstep.evaluate.report import md_table, provenance, provenance_md, write_json

# model variants timed beside the default path at 1 step: what each speed change buys
VARIANTS = {"float32, torch": {"dtype": "float32", "backend": "torch"},
            "float32, torch, NCHW": {"dtype": "float32", "channels_last": False, "backend": "torch"},
            "float32, torch, NCHW, tile 128 (pre-issue-13 default)": {"dtype": "float32", "tile": 128,
                                                                       "channels_last": False, "backend": "torch"}}


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


class MacCounter:
    """Counts the multiply-accumulates of every Conv2d / ConvTranspose2d / Linear call in a block,
    from the layers' shapes, plus the two N x N products of each self-attention call (diffusers
    ``Attention``: QK^T and AV, 2 N² x inner_dim for N tokens); biases, norms and activations are
    not counted."""

    def __enter__(self):
        self.macs = 0
        self._handle = nn.modules.module.register_module_forward_hook(self._hook)
        return self

    def _hook(self, mod, inputs, out):
        if isinstance(mod, nn.Conv2d):
            self.macs += out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.ConvTranspose2d):
            self.macs += (inputs[0].numel() * (mod.out_channels // mod.groups)
                          * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, nn.Linear):
            self.macs += out.numel() * mod.in_features
        elif type(mod).__name__ == "Attention" and hasattr(mod, "inner_dim"):  # the projections are Linear
            x = inputs[0] if inputs else out
            tokens = x[0, 0].numel() if x.ndim == 4 else x.shape[1]  # (B, C, H, W) or (B, N, C)
            self.macs += 2 * x.shape[0] * tokens ** 2 * mod.inner_dim

    def __exit__(self, *exc):
        self._handle.remove()
        return False


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """Best GFLOP/s of an n x n matmul in ``dtype`` on the CPU, with torch's current threads."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(dtype) for _ in range(2))
    a @ b  # warm-up (oneDNN/MKL kernel selection)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def _texture(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth random texture (not white noise, which no SR model sees)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, max(2, size // 8), max(2, size // 8), generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def _round_robin(fns: dict, repeats: int, device) -> dict[str, list[float]]:
    """Time one run of each method in turn, ``repeats`` rounds (warm-ups are the caller's)."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return times


def _child_peak(model: str, load_kw: dict, method: str, size: int, weights_dir) -> dict:
    """Runs in a fresh process: one call of ``method`` on a ``size``² input; returns its peak."""
    torch.set_num_threads(int(os.environ.get("UPSTEP_BENCH_THREADS", torch.get_num_threads())))
    from upstep.api import load
    from upstep.peers import get_peer

    up = load(model, **load_kw)
    lr = _texture(size)
    if method.startswith("model@"):
        fn = lambda: up.upscale_tensor(lr, steps=int(method.split("@")[1].split()[0]))  # noqa: E731
    else:
        peer = get_peer(method, up.scale, weights_dir=weights_dir)
        fn = lambda: peer.upscale(lr, up.scale)  # noqa: E731
    with PeakMemory(up.device if method.startswith("model@") else torch.device("cpu")) as pm:
        out = fn()
    th, tw = up.pipeline.tile_shape(*out.shape[-2:])
    return {"peak_mem_mb": pm.peak / 2**20, "output_numel": out.numel(), "tile_hr": [th, tw]}


def peak_in_fresh_process(**kw) -> dict:
    import multiprocessing as mp

    os.environ["UPSTEP_BENCH_THREADS"] = str(torch.get_num_threads())
    pool = mp.get_context("spawn").Pool(1)
    try:
        result = pool.apply(_child_peak, kwds=kw)
    except BaseException:  # an error or Ctrl-C: stop the child now (joining a lost job would hang)
        pool.terminate()
        raise
    else:  # close, not the context manager's terminate: the child exits normally and frees the
        pool.close()  # semaphores it made, else Python warns of leaked ones at shutdown
    finally:
        pool.join()
    return result


FULL = {"sizes": "128,256,512", "steps": "1,4,15,50", "memory_sizes": "256,512,1024", "untiled_max": 512,
        "repeats": 5, "peers": "all"}
QUICK = {"sizes": "128,512", "steps": "1", "memory_sizes": "256,1024", "untiled_max": 256, "repeats": 5,
         "peers": "realesr-general-x4v3,fsrcnn,espcn"}


def add_bench_arguments(p) -> None:
    p.add_argument("--model", default="default-x4")
    p.add_argument("--also", default="", help="comma-separated further models timed in the same rounds "
                   "(their default 1-step path, rows named MODEL@1), e.g. large-x4")
    p.add_argument("--quick", action="store_true",
                   help="128² and 512² at 1 step, memory at 256² and 1024² (a few minutes on 2 cores)")
    # these default to FULL's values, or QUICK's with --quick; a value given on the command line wins over both
    p.add_argument("--sizes", default=None, help="square LR input sizes for latency (default 128,256,512)")
    p.add_argument("--steps", default=None, help="DDIM steps to time (1 is the reference; default 1,4,15,50)")
    p.add_argument("--memory-sizes", default=None,
                   help="LR sizes for the tiled-vs-untiled memory run (default 256,512,1024)")
    p.add_argument("--untiled-max", type=int, default=None, help="largest LR size run untiled (default 512)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds, each running every method once (default 5)")
    p.add_argument("--budget-s", type=float, default=300.0, help="skip a configuration estimated slower than this")
    p.add_argument("--peers", default=None, help="'all' (the default), 'none' or comma-separated names")
    p.add_argument("--no-variants", action="store_true", help="skip the float32 / old-default rows")
    p.add_argument("--no-row-memory", action="store_true", help="skip the fresh-process peak of each latency row")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--tile", default="auto", help="LR tile size or auto (the default path)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--peak-n", type=int, default=2048, help="matrix size of the matmul peak measurement")
    p.add_argument("--out", "-o", default="docs/results/bench")
    p.add_argument("--weights-dir", default=None)


def _options(args) -> dict:
    from upstep.errors import UpstepError

    preset = QUICK if args.quick else FULL
    o = {k: preset[k] if getattr(args, k) is None else getattr(args, k) for k in FULL}
    if o["repeats"] < 1:   # no timed round: no median to report
        raise UpstepError(f"--repeats must be at least 1, got {o['repeats']}")
    o["row_memory"] = not (args.no_row_memory or args.quick)
    return o


def bench(args, command=None) -> dict:
    from upstep.api import load
    from upstep.hardware import describe, native_bf16
    from upstep.peers import available_peers

    if args.threads:
        torch.set_num_threads(args.threads)
    opt = _options(args)
    tile = args.tile if args.tile == "auto" else int(args.tile)
    default_kw = {"device": args.device, "dtype": args.dtype, "tile": tile, "backend": args.backend}
    up = load(args.model, **default_kw)
    dev, s = up.device, up.scale
    run_dtype = str(up.pipeline.dtype).replace("torch.", "")
    variant_kw = {"": default_kw, **{v: {"device": args.device, **vkw} for v, vkw in VARIANTS.items()}}
    models = {"": up, **({} if args.no_variants else {v: load(args.model, **variant_kw[v]) for v in VARIANTS})}
    variant_dtype = {v: str(m.pipeline.dtype).replace("torch.", "") for v, m in models.items()}
    sizes = [int(v) for v in str(opt["sizes"]).split(",") if v]
    steps = sorted({int(v) for v in str(opt["steps"]).split(",") if v} | {1})
    peers = [p for p in available_peers(s, weights_dir=args.weights_dir)
             if p.name == "bicubic" or opt["peers"] == "all" or p.name in opt["peers"].split(",")]
    also = {name: load(name, **default_kw) for name in args.also.split(",") if name}
    for name, m in also.items():
        if m.scale != s:
            raise ValueError(f"--also {name}: a x{m.scale} model, but {args.model} is x{s}")
    # torch twins of the ORT-run models, for counting their MACs
    twins = {id(m): load(n, **{**kw, "backend": "torch"})
             for n, m, kw in [(args.model, up, default_kw), *((n, m, default_kw) for n, m in also.items())]
             if m.backend != "torch"}
    prov = provenance(command)
    # bf16's peak only where bf16 is native (or the run uses it): emulated, a 2048² product takes a minute
    peak_dtypes = ("float32", "bfloat16") if native_bf16() or run_dtype == "bfloat16" else ("float32",)
    peaks = {"start": {d: matmul_peak(getattr(torch, d), args.peak_n) for d in peak_dtypes}}
    print("matmul peak GFLOP/s at start:", peaks["start"])

    latency, first_s, prev = [], {}, None
    for size in sizes:
        lr = _texture(size)
        out_px = (size * s) ** 2
        fns, rows = {}, {}

        def first_run(name: str, fn, dtype: str, est: float | None, count: bool = True, backend: str = "torch",
                      mac_fn=None) -> None:
            """The untimed first run of a method: its warm-up, its MAC count, and its time for the
            budget (estimated beforehand from the previous size, so a hopeless run never starts).
            ``mac_fn``: the same computation in torch, whose layers the counter sees (ORT's are not
            torch modules)."""
            if est is not None and est > args.budget_s:
                rows[name] = {"size": size, "method": name,
                              "skipped": f"estimated {est:.0f} s per run > --budget-s {args.budget_s:.0f}"}
                return
            with MacCounter() as mc:
                t0 = time.perf_counter()
                fn()
                first_s[name] = time.perf_counter() - t0
            if mac_fn is not None:
                with MacCounter() as mc:
                    mac_fn()
            fns[name] = fn
            rows[name] = {"size": size, "method": name, "dtype": dtype, "backend": backend,
                          "macs": mc.macs if count else None}

        def model_run(name: str, m, dtype: str) -> None:
            twin = twins.get(id(m))
            first_run(name, lambda: m.upscale_tensor(lr, steps=1), dtype, scaled(name), backend=m.backend,
                      mac_fn=(lambda: twin.upscale_tensor(lr, steps=1)) if twin else None)

        def scaled(name: str) -> float | None:
            return first_s[name] * (size / prev) ** 2 if prev and name in first_s else None

        model_run("model@1", up, run_dtype)
        if "model@1" not in fns:  # over budget: so is everything else at this size and above
            latency.append(rows["model@1"])
            break
        macs1, per_step = rows["model@1"]["macs"], None
        for n in steps[1:]:  # same tiles and kernels as model@1 (warm); MACs grow linearly with steps
            name, est = f"model@{n}", first_s["model@1"] * n
            if est > args.budget_s:
                rows[name] = {"size": size, "method": name,
                              "skipped": f"estimated {est:.0f} s per run > --budget-s {args.budget_s:.0f}"}
                continue
            if per_step is None:
                with MacCounter() as mc2:
                    twins.get(id(up), up).upscale_tensor(lr, steps=2)
                per_step = mc2.macs - macs1
            fns[name] = (lambda n=n: up.upscale_tensor(lr, steps=n))
            rows[name] = {"size": size, "method": name, "dtype": run_dtype, "backend": up.backend,
                          "macs": macs1 + (n - 1) * per_step}
        for v, m in models.items():
            if v:
                model_run(f"model@1 {v}", m, variant_dtype[v])
        for name, m in also.items():
            model_run(f"{name}@1", m, str(m.pipeline.dtype).replace("torch.", ""))
        for peer in peers:  # the first run also loads the weights
            first_run(peer.name, (lambda peer=peer: peer.upscale(lr, s)), "float32", scaled(peer.name),
                      count=not type(peer).__name__.startswith("OpenCV"))
        prev = size
        times = _round_robin(fns, opt["repeats"], dev)
        ref = statistics.median(times["model@1"])
        for name, row in rows.items():
            if name in times:
                t = sorted(times[name])
                med = statistics.median(t)
                q = statistics.quantiles(t, n=4) if len(t) >= 2 else [t[0]] * 3
                row.update(median_s=med, min_s=t[0], max_s=t[-1], iqr_s=[q[0], q[2]], runs_s=times[name],
                           mp_per_s=out_px / 1e6 / med, time_vs_model1=med / ref)
                if row.get("macs"):
                    row["macs_per_out_px"] = row["macs"] / out_px
                    row["gflops"] = 2 * row["macs"] / med / 1e9
            latency.append(row)
        for row in latency:
            if row["size"] == size and "median_s" in row and opt["row_memory"] and row["median_s"] < 10:
                method, v = row["method"], ""
                for cand in VARIANTS:
                    if method.endswith(" " + cand):
                        method, v = method[: -len(cand) - 1], cand
                kw = variant_kw[v] if method.startswith("model@") else default_kw
                row["peak_mem_mb"] = peak_in_fresh_process(model=args.model, load_kw=kw, method=method, size=size,
                                                           weights_dir=args.weights_dir)["peak_mem_mb"]
            if row["size"] == size:
                print({k: v for k, v in row.items() if k != "runs_s"})
    peaks["end"] = {d: matmul_peak(getattr(torch, d), args.peak_n) for d in peak_dtypes}
    print("matmul peak GFLOP/s at end:", peaks["end"])
    for row in latency:
        if "gflops" in row and row["dtype"] in peaks["start"]:
            peak = max(peaks["start"][row["dtype"]], peaks["end"][row["dtype"]])
            row["fraction_of_peak"] = row["gflops"] / peak
            row["implausible"] = row["gflops"] > 1.1 * peak

    memory = []
    for size in [int(v) for v in str(opt["memory_sizes"]).split(",") if v]:
        for pipeline in ("auto tile", "untiled"):
            if pipeline == "untiled" and size > opt["untiled_max"]:
                memory.append({"size": size, "pipeline": pipeline, "skipped": f"untiled above {opt['untiled_max']}"})
                continue
            kw = {**default_kw, "tile": tile if pipeline == "auto tile" else size}
            peak = peak_in_fresh_process(model=args.model, load_kw=kw, method="model@1", size=size,
                                         weights_dir=args.weights_dir)
            f = up.model.autoencoder.factor
            # input, bicubic upsample, output, blend accumulator (3 ch each) and the noise latent
            buffers = (size * size * 3 + 3 * peak["output_numel"]
                       + up.model.unet.latent_channels * peak["output_numel"] // 3 // f**2) * 4
            memory.append({"size": size, "pipeline": pipeline, "tile_hr": peak["tile_hr"],
                           "peak_mem_mb": peak["peak_mem_mb"], "image_buffers_mb": buffers / 2**20,
                           "working_mem_mb": max(0.0, peak["peak_mem_mb"] * 2**20 - buffers) / 2**20})
            print(memory[-1])
    try:
        load_end = os.getloadavg()[0]
    except OSError:
        load_end = None
    return {"model": args.model, "scale": s, "device": str(dev), "dtype": run_dtype, "backend": up.backend,
            "tile": args.tile,
            "options": {**opt, "quick": args.quick, "budget_s": args.budget_s, "peak_n": args.peak_n}, **prov, "load_avg_1min_end": load_end,
            "matmul_peak_gflops": peaks, "latency": latency, "memory": memory,
            "also": list(also), "goal": _goal(latency, ["model@1"] + [f"{n}@1" for n in also])}


def _goal(latency: list[dict], methods=("model@1",), peer: str = "realesr-general-x4v3",
          target: float = 2.5) -> list[dict]:
    """The issue's speed goal: the model's 1-step path (and each ``--also`` model's) at least
    ``target`` x faster than ``peer``, timed in the same rounds. ``speedup`` (what ``met`` reads) is
    the ratio of the medians; ``per_round`` is the ratio within each round (peer run / model run,
    in the same round), whose median and range show how much a load change between rounds moved it."""
    out = []
    for size in sorted({r["size"] for r in latency}):
        by = {r["method"]: r for r in latency if r["size"] == size and "median_s" in r}
        for method in methods:
            if method in by and peer in by:
                ratio = by[peer]["median_s"] / by[method]["median_s"]
                g = {"size": size, "method": method, "peer": peer, "speedup": ratio, "target": target,
                     "met": ratio >= target}
                a, b = by[peer].get("runs_s"), by[method].get("runs_s")
                if a and b and len(a) == len(b):   # runs_s is in round order
                    rounds = [x / y for x, y in zip(a, b)]
                    g["per_round"] = {"median": statistics.median(rounds), "min": min(rounds), "max": max(rounds),
                                      "below_target": sum(r < target for r in rounds), "rounds": len(rounds)}
                out.append(g)
    return out


def _spread(x: dict) -> str:
    return f"{x['min_s']:.3g}–{x['max_s']:.3g}"


def _markdown(r: dict) -> str:
    def gflops(x):
        if "gflops" not in x:
            return "n/a"
        if "fraction_of_peak" not in x:
            return f"{x['gflops']:.1f} (no {x['dtype']} peak measured)"
        flag = " (above the matmul peak: implausible)" if x.get("implausible") else ""
        return f"{x['gflops']:.1f} ({100 * x['fraction_of_peak']:.0f} %){flag}"
    rows = [[x["size"], x["method"]] + ([x["dtype"] + (f", {x['backend']}" if x.get("backend", "torch") != "torch" else ""),
                                         x["median_s"], _spread(x), x["time_vs_model1"], x["mp_per_s"],
                                         f"{x['macs_per_out_px'] / 1e3:.1f} k" if "macs_per_out_px" in x else "n/a",
                                         gflops(x), x.get("peak_mem_mb", float("nan"))]
                                        if "median_s" in x else ["skipped: " + x["skipped"]] + [""] * 8)
            for x in r["latency"]]
    mem = [[x["size"], x["pipeline"]] + ([f"{x['tile_hr'][0]}x{x['tile_hr'][1]}", x["peak_mem_mb"],
                                          x["image_buffers_mb"], x["working_mem_mb"]]
                                         if "peak_mem_mb" in x else ["skipped", "", "", ""])
           for x in r["memory"]]
    pk = r["matmul_peak_gflops"]
    def per_round(g):
        pr = g.get("per_round")
        return (f"{pr['median']:.2f}x ({pr['min']:.2f}–{pr['max']:.2f}x; {pr['below_target']} of {pr['rounds']} "
                f"below {g['target']}x)" if pr else "n/a")
    goal = [[g["size"], g.get("method", "model@1"), f"{g['speedup']:.2f}x", per_round(g), f">= {g['target']}x",
             "met" if g["met"] else "not met"] for g in r["goal"]]
    model_name = {"model@1": f"{r['model']} (model@1)", **{f"{n}@1": n for n in r.get("also", [])}}
    for row in goal:
        row[1] = model_name.get(row[1], row[1])
    bf16 = (f"bf16 {pk['start']['bfloat16']:.1f} / {pk['end']['bfloat16']:.1f}" if "bfloat16" in pk["start"]
            else "bf16 not measured (this CPU has no native bf16: it is emulated, and the default path is float32)")
    o = r["options"]
    return "\n".join([
        f"# Speed and memory of `{r['model']}` (x{r['scale']}, {r['device']}, default path: {r['dtype']}, "
        f"{r.get('backend', 'torch')}, "
        f"tile {r['tile']})", "",
        provenance_md(r) + (f"; load average {r['load_avg_1min_end']:.2f} at end" if r.get("load_avg_1min_end")
                            is not None else ""), "",
        f"Matmul peak of this machine in this run ({r['options']['peak_n']}², best of 10), GFLOP/s: float32 {pk['start']['float32']:.1f} "
        f"at start / {pk['end']['float32']:.1f} at end; {bf16}.", "",
        f"{o['repeats']} timed rounds; in each round every method runs once, in turn (round-robin), after one "
        "untimed warm-up run of each (model@N: model@1's). Median and min–max of the runs. "
        "`vs model@1`: ratio to the default 1-step path at the same size. MACs: multiply-accumulates of the "
        "convolutions, linear layers and attention products per output pixel, counted from the layers' shapes for the input as run "
        "(tile overlaps included); GFLOP/s = 2 x MACs / median, with the share of the matmul peak of the same "
        "dtype. Peak memory: what one call adds, in a fresh process (RSS on CPU).", "",
        md_table(["LR size", "method", "dtype", "median s", "min–max s", "vs model@1", "output MP/s",
                  "MACs / out px", "GFLOP/s (of peak)", "peak MB"], rows), "",
        "## Goal: default path vs Real-ESRGAN general-x4v3", "",
        md_table(["LR size", "model", "general-x4v3 time / model time (medians)",
                  "within each round: median (range; rounds below the goal)", "goal", "result"], goal) if goal
        else "(general-x4v3 not run: its weights are missing or --peers excluded it)", "",
        "## Memory with growing images (1 step)", "",
        "Image buffers: LR input, bicubic upsample, output, blend accumulator and the noise latent (float32); "
        "working memory: peak minus those buffers — what the network needs, bounded by the tile.", "",
        md_table(["LR size", "pipeline", "HR tile", "peak MB", "image buffers MB", "working MB"], mem), ""])


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
        pts = [(x["size"], x["median_s"], x["min_s"], x["max_s"]) for x in r["latency"]
               if x["method"] == m and "median_s" in x]
        if pts:
            xs, med, lo, hi = zip(*pts)
            a.errorbar(xs, med, yerr=[[m_ - l for m_, l in zip(med, lo)], [h - m_ for m_, h in zip(med, hi)]],
                       fmt="o-", capsize=2, label=m)
    a.set_xscale("log", base=2), a.set_yscale("log"), a.set_xlabel("LR size (px)"), a.set_ylabel("median s (min–max)")
    a.legend(fontsize=6), a.set_title("latency")
    for pipeline in ("auto tile", "untiled"):
        for key, style, suffix in (("peak_mem_mb", "o-", ""), ("working_mem_mb", "x--", " working")):
            pts = [(x["size"], x[key]) for x in r["memory"] if x["pipeline"] == pipeline and key in x]
            if pts:
                b.plot(*zip(*pts), style, label=pipeline + suffix)
    b.set_xscale("log", base=2), b.set_xlabel("LR size (px)"), b.set_ylabel("peak MB"), b.legend(fontsize=7)
    b.set_title("peak memory, 1 step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
