"""Real-camera diagnosis and comparison (issue 29): where do the GAN peers gain over upstep's models
on real camera LR, and how do candidate models compare, on realsr_canon (50 Canon 128 -> 512 pairs).

    python benchmarks/real_camera.py --out docs/results/real_camera \
        [--model NAME=FOLDER_OR_SHIPPED ...] [--peers realesr-general-x4v3,realesrgan-x4plus]

Per method and image: PSNR-Y (4 px border) and LPIPS-alex (the project's evaluation metric, never a
training loss) on uint8 outputs, and three descriptions of what the method does to the image:

* ``edge_gain``: mean gradient magnitude of the output over the HR's strongest edges (top 10 % of HR
  gradient), relative to the HR's there (1 = as sharp as the HR; bicubic is far below);
* ``flat_gain``: the same over the HR's flattest half (above 1 = noise or texture the HR lacks);
* the radially averaged power spectrum of the output's luma relative to the HR's, in 16 bands
  from 0 to 0.5 cycles/pixel (``spectrum.png``).

Writes results.json (every figure per image; means, and for each method the paired per-image
LPIPS difference against each peer with its standard error), results.md and spectrum.png.
Models run with one step, seed 0. Selection note: realsr_canon is a dev set; models picked on it
are reported as dev figures. ``--set`` runs the same comparison on another paired x4 set of
``upstep eval`` (e.g. imagenet_valsr_resshift, synthetic Real-ESRGAN-style LR), so that a
candidate picked for real camera LR is checked on the other dev sets in the same way.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

BANDS = 16


def luma(x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) [0, 1] -> (H, W) BT.601 luma."""
    r, g, b = x[0]
    return 0.299 * r + 0.587 * g + 0.114 * b


def grad_mag(y: torch.Tensor) -> torch.Tensor:
    gy = torch.zeros_like(y)
    gx = torch.zeros_like(y)
    gy[1:-1] = (y[2:] - y[:-2]) / 2
    gx[:, 1:-1] = (y[:, 2:] - y[:, :-2]) / 2
    return (gx ** 2 + gy ** 2).sqrt()


def radial_power(y: torch.Tensor) -> np.ndarray:
    """Mean power in BANDS radial frequency bands (0 .. 0.5 cycles/px) of a Hann-windowed luma."""
    h, w = y.shape
    win = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    p = torch.fft.fftshift(torch.fft.fft2((y - y.mean()) * win)).abs() ** 2
    fy = torch.fft.fftshift(torch.fft.fftfreq(h))[:, None]
    fx = torch.fft.fftshift(torch.fft.fftfreq(w))[None, :]
    r = (fy ** 2 + fx ** 2).sqrt()
    idx = torch.clamp((r / 0.5 * BANDS).long(), max=BANDS)
    out = np.zeros(BANDS)
    for k in range(BANDS):
        m = idx == k
        out[k] = float(p[m].mean())
    return out


def describe(sr: torch.Tensor, hr: torch.Tensor) -> dict:
    ys, yh = luma(sr), luma(hr)
    gs, gh = grad_mag(ys), grad_mag(yh)
    edge = gh >= torch.quantile(gh.flatten(), 0.9)
    flat = gh <= torch.quantile(gh.flatten(), 0.5)
    return {"edge_gain": float(gs[edge].mean() / gh[edge].mean()),
            "flat_gain": float(gs[flat].mean() / gh[flat].mean().clamp_min(1e-6)),
            "spectrum_ratio": (radial_power(ys) / np.maximum(radial_power(yh), 1e-12)).tolist()}


def paired(a: list[float], b: list[float]) -> dict:
    d = np.asarray(a) - np.asarray(b)
    return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(len(d)))}


def write_pairs(out: Path, pairs: list[list[str]]) -> int:
    """pairs.md / pairs.json in ``out``: for each (A, B), mean ± SE of A − B per image (PSNR-Y, LPIPS)
    and the three-way verdict for "A is better", from the run's results.json."""
    from upstep.evaluate.ablation import paired_claim

    res = json.loads((out / "results.json").read_text())
    per = res["per_image"]
    unknown = sorted({m for pair in pairs for m in pair} - set(per))
    if unknown:
        raise SystemExit(f"{out / 'results.json'}: no method {unknown}; it has {sorted(per)}")
    rows, js = [], []
    for a_name, b_name in pairs:
        for metric, higher in (("lpips", False), ("psnr", True)):
            c = paired_claim(dict(zip(per[b_name]["image"], per[b_name][metric])),
                             dict(zip(per[a_name]["image"], per[a_name][metric])), higher)
            js.append({"a": a_name, "b": b_name, "metric": metric, **c})
            rows.append(f"| {a_name} − {b_name} | {metric} | {c['diff']:+.4f} ± {c['se']:.4f} | {c['n']} | {c['verdict']} |")
    (out / "pairs.json").write_text(json.dumps(js, indent=1) + "\n")
    md = [f"# Paired per-image differences, {res['set']} ({res['images']} images)", "",
          f"Read from this folder's results.json (`{res['command']}`, {res['date']}) by "
          f"`python benchmarks/real_camera.py --out {out} --pairs {','.join(':'.join(p) for p in pairs)}`. "
          "Difference = A − B, mean ± standard error over images; verdict: \"held\" = A better beyond 2 SE.", "",
          "| A − B | metric | difference | images | verdict |", "|---|---|---|---|---|", *rows]
    (out / "pairs.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


def main(argv=None) -> int:
    from upstep.api import load
    from upstep.degrade import libjpeg_roundtrip
    from upstep.errors import UpstepError
    from upstep.evaluate.report import provenance, provenance_md
    from upstep.evaluate.sets import open_set
    from upstep.metrics import measure, quantize
    from upstep.peers import available_peers

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/results/real_camera")
    ap.add_argument("--model", action="append", default=[], help="NAME=FOLDER or a shipped model name")
    ap.add_argument("--peers", default="realesr-general-x4v3")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--set", default="realsr_canon", help="a paired x4 set of `upstep eval` (default realsr_canon)")
    ap.add_argument("--scale", type=int, default=4, choices=(2, 4, 8),
                    help="x2, x8: LR made from the HR by MATLAB bicubic, as `upstep eval --scale N` (or see --real-lr)")
    ap.add_argument("--real-lr", action="store_true",
                    help="start from the set's own LR files (realsr_canon: real camera LR; BenchmarkSet.load_real_lr): "
                         "at --scale 2 the HR is brought down to twice their size (a real-camera x2 task), at "
                         "--scale 8 the LR is halved by MATLAB bicubic and the HR kept (a real-camera-like x8 task)")
    ap.add_argument("--strength", default=None,
                    help="the models' strength (0..1 or 'auto'); default: each model's own default (auto for "
                         "default-x4 since 2026-12-07, else 1)")
    ap.add_argument("--jpeg", type=int, default=None, metavar="Q",
                    help="save every LR as a JPEG of quality Q (Pillow's libjpeg, 4:2:0) before upscaling: real "
                         "photos as they are usually stored")
    ap.add_argument("--detector", action="append", default=[], metavar="NAME=DIR",
                    help="model NAME picks strength 'auto' with the camera detector in DIR instead of the "
                         "shipped one (upstep.camera_detect)")
    ap.add_argument("--pairs", default=None,
                    help="A:B,C:D: only write pairs.md / pairs.json in --out, the paired per-image differences "
                         "A - B of PSNR-Y and LPIPS read from its results.json (no upscaling)")
    a = ap.parse_args(argv)
    if a.jpeg is not None and not 1 <= a.jpeg <= 100:
        ap.error(f"--jpeg {a.jpeg}: a JPEG quality is 1 to 100")
    if a.pairs:
        return write_pairs(Path(a.out), [p.split(":") for p in a.pairs.split(",")])
    models = [m.split("=", 1) if "=" in m else (m, m) for m in (a.model or ["fidelity-x4", "default-x4"])]
    peers = {p.name: p for p in available_peers(a.scale)}
    want = ["bicubic"] + [p for p in a.peers.split(",") if p]
    missing = [p for p in want if p not in peers]
    if missing:
        raise SystemExit(f"peers not available here: {missing} (have {sorted(peers)})")
    from upstep.strength import parse_strength

    strength = parse_strength(a.strength)
    methods = {name: ("model", load(path, device="cpu")) for name, path in models}
    wrong = [f"{name} (x{up.scale})" for name, (_, up) in methods.items() if up.scale != a.scale]
    if wrong:
        raise SystemExit(f"--scale {a.scale} needs x{a.scale} models: {', '.join(wrong)}")
    from upstep.strength import AUTO

    bad = [d for d in a.detector if "=" not in d]
    if bad:
        raise SystemExit(f"--detector {bad[0]!r}: give NAME=DIR, NAME one of the --model names")
    detectors = dict(d.split("=", 1) for d in a.detector)
    if len(detectors) < len(a.detector):
        raise SystemExit("--detector: each model takes one detector")
    unknown = sorted(set(detectors) - set(methods))
    if unknown:
        raise SystemExit(f"--detector names no --model: {unknown}")
    unused = sorted(n for n in detectors if methods[n][1].auto_rule is None or strength not in (None, AUTO))
    if unused:
        raise SystemExit(f"--detector for {unused}: only strength auto reads a detector (a model with an auto rule, "
                         "--strength auto or none)")
    if detectors:
        from upstep.camera_detect import load_detector

        for name, folder in detectors.items():
            try:
                methods[name][1].camera_detector = load_detector(folder)
            except UpstepError as e:
                raise SystemExit(f"--detector {name}={folder}: {e}") from None
    methods.update({p: ("peer", peers[p]) for p in want})
    s = open_set(a.set)
    items = s.items[: a.limit] if a.limit else s.items
    per = {m: {"image": [], "psnr": [], "lpips": [], "edge_gain": [], "flat_gain": [], "spectrum_ratio": [],
               "seconds": [], "strength": []} for m in methods}
    for it in items:
        lr, hr = s.load_real_lr(it, a.scale) if a.real_lr else s.load(it, a.scale)
        if a.jpeg is not None:
            lr = libjpeg_roundtrip(lr, a.jpeg)
        for m, (kind, obj) in methods.items():
            t0 = time.perf_counter()
            sr = (obj.upscale_tensor(lr, steps=1, seed=0, strength=strength) if kind == "model"
                  else obj.upscale(lr, a.scale))
            per[m]["seconds"].append(time.perf_counter() - t0)
            if kind == "model":   # the strength it ran at (auto: what the detector picked; None: its own weights)
                per[m]["strength"].append(1.0 if obj.last_strength is None else obj.last_strength)
            sr = quantize(sr.float().clamp(0, 1))
            met = measure(sr, hr, ["psnr", "lpips"], crop_border=4)
            d = describe(sr, hr)
            per[m]["image"].append(it.name)
            for k in ("psnr", "lpips"):
                per[m][k].append(float(met[k][0]))
            for k, v in d.items():
                per[m][k].append(v)
        print(it.name, " ".join(f"{m}:{per[m]['lpips'][-1]:.3f}" for m in methods), flush=True)
    summary = {}
    for m, r in per.items():
        summary[m] = {k: float(np.mean(r[k])) for k in ("psnr", "lpips", "edge_gain", "flat_gain")}
        if r["strength"]:
            summary[m]["strength_mean"] = float(np.mean(r["strength"]))
        summary[m]["spectrum_ratio"] = np.mean(np.asarray(r["spectrum_ratio"]), axis=0).tolist()
        summary[m]["vs"] = {p: {"lpips": paired(r["lpips"], per[p]["lpips"]), "psnr": paired(r["psnr"], per[p]["psnr"])}
                            for p in want if p != m}
    prov = provenance(["python", "benchmarks/real_camera.py", *(argv if argv is not None else sys.argv[1:])])
    task = (f"x{a.scale}, the set's own LR, HR brought to x{a.scale} of it by MATLAB bicubic"
            if a.real_lr and a.scale < 4 else
            f"x{a.scale}, the set's own LR halved by MATLAB bicubic, its HR kept" if a.real_lr and a.scale > 4
            else f"x{a.scale}" + ("" if a.scale == 4 else ", LR made from the HR by MATLAB bicubic"))
    if a.jpeg is not None:
        task += f", the LR saved as JPEG quality {a.jpeg} (libjpeg) first"
    res = {**prov, "set": a.set, "scale": a.scale, "task": task, "images": len(items), "models": dict(models),
           "strength": {name: (strength if strength is not None else
                               "auto (the model's default)" if up.auto_rule else 1.0)
                        for name, (kind, up) in methods.items() if kind == "model"},
           "detectors": detectors, "jpeg_quality": a.jpeg,
           "summary": summary,
           "per_image": per}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=1) + "\n")
    md = [f"# {a.set}: {len(items)} LR/HR pairs, {task}, one step, seed 0", "",
          provenance_md(prov), "",
          "PSNR-Y (4 px border) and LPIPS-alex on uint8 outputs. edge_gain / flat_gain: mean gradient of the "
          "output over the HR's top-10 % edges / flattest half, relative to the HR's. Differences: paired "
          "per-image mean ± standard error.", "",
          "| method | PSNR-Y | LPIPS | edge_gain | flat_gain | " + " | ".join(f"ΔLPIPS vs {p}" for p in want) + " |",
          "|---" * (5 + len(want)) + "|"]
    for m, r in summary.items():
        diffs = [f"{r['vs'][p]['lpips']['mean']:+.4f} ± {r['vs'][p]['lpips']['se']:.4f}" if p in r["vs"] else "—"
                 for p in want]
        md.append(f"| {m} | {r['psnr']:.2f} | {r['lpips']:.4f} | {r['edge_gain']:.3f} | {r['flat_gain']:.3f} | "
                  + " | ".join(diffs) + " |")
    md += ["", *(f"- {m}: strength below 1 on {sum(x < 1 for x in r['strength'])} of {len(r['strength'])} images "
                 f"(mean {np.mean(r['strength']):.3f})" for m, r in per.items() if r["strength"])]
    (out / "results.md").write_text("\n".join(md) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = (np.arange(BANDS) + 0.5) / BANDS * 0.5
    fig, ax = plt.subplots(figsize=(6, 4))
    for m, r in summary.items():
        ax.plot(f, r["spectrum_ratio"], label=m)
    ax.axhline(1, color="k", lw=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("frequency (cycles / HR pixel)")
    ax.set_ylabel("output power / HR power")
    ax.set_title(f"{a.set}, {len(items)} images")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "spectrum.png", dpi=110)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
