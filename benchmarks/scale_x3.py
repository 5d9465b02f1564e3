"""x3 (a scale no model ships): `upstep upscale --scale 3` against bicubic x3, and the alternatives.

    python benchmarks/scale_x3.py                  # writes docs/results/scale_x3

HR images of Set14 and BSD100 are made into x3 LR by MATLAB bicubic (``BenchmarkSet.load`` at
scale 3: HR cropped to a multiple of 3, ``upstep.degrade.resize.imresize``), then upscaled back:

* ``bicubic``: MATLAB bicubic x3;
* ``upstep --scale 3``: what the CLI does (``upstep.api.plan_size`` picks the smallest shipped
  scale at or above 3, ``Upscaler.upscale_tensor(..., out_size=)`` runs it and resizes down with
  ``upstep.api.OUTPUT_FILTER``);
* ``x4 + <filter>``: the same x4 output resized down with each filter of ``resize_output``
  (the network runs once per image for all of them);
* ``x2 + bicubic up``: the x2 model, then bicubic x1.5 up (when a x2 model ships).

Metrics and records as ``upstep eval`` (``upstep.evaluate.methods``): PSNR on Y with 3 px
cropped, LPIPS-alex, uint8-quantised. The claim the issue sets (better LPIPS, PSNR-Y not worse
than bicubic) is judged per image (``ablation.paired_claim``: mean paired difference and its SE).
Writes ``results.json``, ``results.md`` and ``scale_x3.png`` into ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "scale_x3"
SCALE = 3
METRICS = ("psnr", "lpips")
PRODUCT = "upstep --scale 3"


def claims(out: Path, set_name: str, methods: list[str]) -> dict:
    """Each method against bicubic, per image: LPIPS better beyond 2 SE; PSNR-Y not worse beyond 2 SE."""
    from upstep.evaluate.ablation import DID_NOT_HOLD, HELD, paired_claim, per_image

    res = {}
    for m in methods:
        lp = paired_claim(per_image(out, set_name, "bicubic", "lpips"), per_image(out, set_name, m, "lpips"), False)
        ps = paired_claim(per_image(out, set_name, "bicubic", "psnr"), per_image(out, set_name, m, "psnr"), True)
        res[m] = {"lpips": lp, "psnr": ps,
                  "meets_issue": lp["verdict"] == HELD and ps["verdict"] != DID_NOT_HOLD and ps["diff"] >= 0}
    return res


def _markdown(res: dict) -> str:
    from upstep.evaluate.report import md_table, provenance_md

    parts = [f"# x3 with `{res['model']}` against bicubic x3 (Set14, BSD100; LR = MATLAB bicubic of HR)", "",
             provenance_md(res), "",
             f"`{PRODUCT}`: the x{res['model_scale']} model, then `{res['output_filter']}` down to x3 (what the CLI "
             "does). PSNR: Y channel, 3 px border cropped, uint8-quantised; LPIPS: alex v0.1, RGB, same crop. "
             "Δ vs bicubic: mean per-image difference ± its standard error; the issue's bar is LPIPS better "
             "(beyond 2 SE) and PSNR-Y not worse. s/image: median wall time (the x4+filter rows reuse one network "
             "output, so only the first of them includes the network).", ""]
    for set_name, s in res["sets"].items():
        rows = []
        for m, r in s["methods"].items():
            c = res["claims"][set_name].get(m)
            d = (lambda k: f"{c[k]['diff']:+.3f} ± {c[k]['se']:.3f}") if c else (lambda k: "")
            rows.append([m, r["psnr"], d("psnr"), r["lpips"], d("lpips"), "yes" if c and c["meets_issue"] else
                         ("no" if c else ""), r["median_seconds"]])
        parts += [f"## {set_name} ({s['images']} images)", "",
                  md_table(["method", "psnr ↑", "Δ psnr", "lpips ↓", "Δ lpips", "meets the bar", "s/image"], rows), ""]
    return "\n".join(parts)


def _figure(plt, res: dict):
    sets = list(res["sets"])
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 4), squeeze=False)
    for ax, set_name in zip(axes[0], sets):
        for m, r in res["sets"][set_name]["methods"].items():
            ax.scatter(r["lpips"], r["psnr"], marker="s" if m == "bicubic" else ("*" if m == PRODUCT else "o"),
                       s=80 if m == PRODUCT else 30, label=m)
        ax.set_xlabel("LPIPS-alex ↓")
        ax.set_ylabel("PSNR-Y (dB) ↑")
        ax.set_title(f"{set_name} x3", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"x3 from MATLAB-bicubic LR: {res['model']} vs bicubic (up-left is better)", fontsize=10)
    return fig


def main() -> None:
    import upstep
    from upstep.api import OUTPUT_FILTER, available_models, plan_size, resize_output, resolve_model
    from upstep.evaluate.methods import add_arguments, evaluate_from_args, file_stamp, last_output, write_report
    from upstep.evaluate.report import provenance
    from upstep.peers import BicubicPeer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(ap, "set14,bsd100", OUT)
    a = ap.parse_args()

    plan = plan_size((100, 100), SCALE)
    up = upstep.load(plan.model, device="cpu", dtype="float32", backend="torch")  # reference numbers
    used = [plan.model]
    size = lambda lr: (lr.shape[-1] * SCALE, lr.shape[-2] * SCALE)  # noqa: E731  (w, h)
    bicubic = BicubicPeer()
    net = last_output(up.upscale_tensor)
    methods = {"bicubic": lambda lr: bicubic.upscale(lr, SCALE),
               PRODUCT: lambda lr: up.upscale_tensor(lr, out_size=size(lr))}
    for f in ("bicubic", "lanczos", "area", "bilinear-aa"):
        methods[f"x{up.scale} + {f} down"] = lambda lr, f=f: resize_output(net(lr), size(lr), f)
    if "default-x2" in available_models() and (resolve_model("default-x2") / "model.safetensors").is_file():
        up2 = upstep.load("default-x2", device="cpu", dtype="float32", backend="torch")
        used.append("default-x2")
        methods["x2 + bicubic up"] = lambda lr: resize_output(up2.upscale_tensor(lr), size(lr), "bicubic")
    ev = evaluate_from_args(a, methods, SCALE, file_stamp(*(resolve_model(m) / "model.safetensors" for m in used)),
                            METRICS)
    res = {"model": plan.model, "model_scale": plan.model_scale, "output_filter": OUTPUT_FILTER, "scale": SCALE,
           "limit": a.limit, **provenance(["python"] + sys.argv), **ev,
           "claims": {s: claims(Path(a.out), s, [m for m in methods if m != "bicubic"]) for s in ev["sets"]}}
    write_report(Path(a.out), res, _markdown(res), _figure, "scale_x3.png")


if __name__ == "__main__":
    main()
