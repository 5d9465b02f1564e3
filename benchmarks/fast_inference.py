"""Does the fast default inference path change the outputs? (issue 13)

Runs ``default-x4`` on Set14 once per arm, each arm adding one change to the previous one, and
compares every arm with the float32 reference (the pre-issue-13 default: float32, NCHW, 128-px
tiles):

    reference   float32, NCHW, --tile 128
    auto tile   + one tile per image up to the memory budget (``tile="auto"``)
    NHWC        + channels_last
    auto dtype  + bf16 autocast where the CPU has native bf16
    default     + ONNX Runtime where it runs (float32 on a CPU) = ``upstep.load("default-x4")``

A change is kept only if the set's mean PSNR-Y moves by at most 0.05 dB and its mean LPIPS-alex by
at most 0.002 (the issue's bar); the worst single image is shown too. Speed is measured by
``upstep bench``, which times these same arms side by side.

``--compile-trial`` also times ``torch.compile`` of the U-Net on the default path (one 128² input:
the first call, which compiles, then eager and compiled runs in turn) and writes ``compile.md``:
a CLI process pays the compile on every start, so it is adopted only if it wins including that.

    python benchmarks/fast_inference.py --out docs/results/fast_inference [--limit N] [--compile-trial]
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.evaluate.sets import open_set
from upstep.hardware import default_dtype
from upstep.metrics import measure
from upstep.model import load_model
from upstep.api import pick_backend, resolve_model
from upstep.pipeline import TiledUpscaler

MAX_PSNR_DB, MAX_LPIPS = 0.05, 0.002


def arms(model_name: str) -> dict[str, TiledUpscaler]:
    base = load_model(resolve_model(model_name))
    cpu = torch.device("cpu")
    dtype = default_dtype(cpu)
    backend = pick_backend("auto", base, cpu, dtype)
    spec = {"reference (float32, NCHW, tile 128)": dict(dtype=torch.float32, tile=128, channels_last=False),
            "+ auto tile": dict(dtype=torch.float32, tile="auto", channels_last=False),
            "+ channels_last": dict(dtype=torch.float32, tile="auto", channels_last=True),
            f"+ {'bf16 autocast' if dtype == torch.bfloat16 else 'auto dtype (float32 here)'}":
                dict(dtype=dtype, tile="auto", channels_last=True),
            f"+ auto backend ({backend} here) = default": dict(dtype=dtype, tile="auto", channels_last=True,
                                                                backend=backend)}
    return {name: TiledUpscaler(copy.deepcopy(base), cpu, **kw) for name, kw in spec.items()}


def compile_trial(model_name: str, out: Path, repeats: int = 7) -> dict:
    import statistics
    import time

    from upstep.evaluate.bench import _round_robin, _texture

    cpu = torch.device("cpu")
    base = load_model(resolve_model(model_name))
    eager = TiledUpscaler(copy.deepcopy(base), cpu, dtype=default_dtype(cpu))
    comp = TiledUpscaler(copy.deepcopy(base), cpu, dtype=default_dtype(cpu))
    comp.model.unet = torch.compile(comp.model.unet, dynamic=False)
    lr = _texture(128)
    t0 = time.perf_counter()
    comp.upscale(lr)
    first = time.perf_counter() - t0
    eager.upscale(lr)  # warm-up; the compiled one was warmed by its first call
    times = _round_robin({"eager": lambda: eager.upscale(lr), "compiled": lambda: comp.upscale(lr)}, repeats, cpu)
    med = {k: statistics.median(v) for k, v in times.items()}
    saved = med["eager"] - med["compiled"]
    r = {"input": "128x128", "dtype": str(default_dtype(cpu)), "first_compiled_call_s": first,
         "median_s": med, "runs_s": times, "calls_to_repay_compile": (first / saved) if saved > 0 else None,
         **provenance([Path(sys.argv[0]).as_posix()] + sys.argv[1:])}
    write_json(out / "compile.json", r)
    (out / "compile.md").write_text("\n".join([
        f"# torch.compile of the U-Net vs eager: {model_name}, 128² input, {r['dtype']}", "", provenance_md(r), "",
        md_table(["", "seconds"], [["first compiled call (compiles)", first],
                                   ["eager, median of runs in turn", med["eager"]],
                                   ["compiled, median of runs in turn", med["compiled"]]]), "",
        (f"Calls of this size needed to repay the compile: {r['calls_to_repay_compile']:.0f}." if saved > 0
         else "Compiled runs were not faster than eager."), ""]))
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default-x4")
    p.add_argument("--set", default="set14")
    p.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    p.add_argument("--out", default="docs/results/fast_inference")
    p.add_argument("--compile-trial", action="store_true", help="also time torch.compile (compile.md)")
    p.add_argument("--compile-only", action="store_true", help="only the torch.compile trial")
    args = p.parse_args(argv)
    if args.compile_trial or args.compile_only:
        print(compile_trial(args.model, Path(args.out)))
        if args.compile_only:
            return 0

    ups = arms(args.model)
    bset = open_set(args.set)
    items = bset.items[: args.limit] if args.limit else bset.items
    per: dict[str, dict[str, list[float]]] = {a: {"psnr": [], "lpips": []} for a in ups}
    for item in items:
        lr, hr = bset.load(item, 4)
        for name, up in ups.items():
            sr = up.upscale(lr, seed=0)[..., : hr.shape[-2], : hr.shape[-1]]
            vals = measure(sr, hr, ["psnr", "lpips"], crop_border=4)
            for k in ("psnr", "lpips"):
                per[name][k] += vals[k]
        print(item.name, {a: round(v["psnr"][-1], 3) for a, v in per.items()}, flush=True)

    ref = next(iter(per))
    rows = []
    for name, v in per.items():
        mean = {k: sum(x) / len(x) for k, x in v.items()}
        d = {k: mean[k] - sum(per[ref][k]) / len(per[ref][k]) for k in mean}
        worst = {k: max(abs(a - b) for a, b in zip(v[k], per[ref][k])) for k in v}
        ok = abs(d["psnr"]) <= MAX_PSNR_DB and abs(d["lpips"]) <= MAX_LPIPS
        rows.append({"arm": name, "psnr_y": mean["psnr"], "lpips": mean["lpips"], "d_psnr": d["psnr"],
                     "d_lpips": d["lpips"], "worst_image_d_psnr": worst["psnr"],
                     "worst_image_d_lpips": worst["lpips"], "within_bar": ok})
    result = {"model": args.model, "set": args.set, "images": len(items), "bar": {"psnr_db": MAX_PSNR_DB,
              "lpips": MAX_LPIPS}, **provenance([Path(sys.argv[0]).as_posix()] + sys.argv[1:]), "arms": rows}
    out = Path(args.out)
    write_json(out / "results.json", result)
    md = "\n".join([
        f"# Fast default inference vs float32: {args.model} on {args.set} ({len(items)} images)", "",
        provenance_md(result), "",
        "Each arm adds one change to the one above; Δ is against the float32 reference (the old default). "
        f"Kept only if |Δ PSNR-Y| ≤ {MAX_PSNR_DB} dB and |Δ LPIPS| ≤ {MAX_LPIPS} (set means); "
        "worst image: largest |Δ| of a single image. PSNR-Y with 4 px cropped, uint8 outputs; LPIPS-alex.", "",
        md_table(["arm", "PSNR-Y", "LPIPS", "Δ PSNR-Y", "Δ LPIPS", "worst image Δ PSNR (abs)", "worst image Δ LPIPS (abs)",
                  "within bar"],
                 [[r["arm"], r["psnr_y"], r["lpips"], f"{r['d_psnr']:+.4f}", f"{r['d_lpips']:+.5f}",
                   f"{r['worst_image_d_psnr']:.4f}", f"{r['worst_image_d_lpips']:.5f}",
                   "yes" if r["within_bar"] else "NO"] for r in rows]), ""])
    (out / "results.md").write_text(md)
    print(md)
    return 0 if all(r["within_bar"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
