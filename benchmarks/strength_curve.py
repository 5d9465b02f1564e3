"""PSNR-Y and LPIPS-alex against strength S (``upstep upscale --strength``, ``upstep.strength``).

    python benchmarks/strength_curve.py                       # default-x4 with its fidelity.safetensors
    python benchmarks/strength_curve.py --model large-x4      # its fidelity end: the shipped fidelity-x4
    python benchmarks/strength_curve.py --model large-x4 --fidelity fidelity-x4 --out docs/results/strength_large_x4

For each S in ``--strengths`` the model runs at θ(S) (network interpolation between its fidelity
end and its own weights) on Set14, BSD100 and realsr_canon, with ``upstep eval``'s sets, metrics
and per-image records (``upstep.evaluate.methods``); bicubic is the reference line. ``--fidelity``
(a model folder or shipped name) makes the pair in a temporary folder when the model does not ship
its fidelity end.

Monotone within the noise: the direction of each metric is read from its two ends (S = 0 vs
S = 1); every step between neighbouring S is then a paired per-image claim in that direction
(``ablation.paired_claim``: mean per-image difference and its standard error). The curve is
monotone within the noise when no step goes the other way by more than 2 SE.

Writes ``results.json``, ``results.md`` and ``strength.png`` into ``--out`` (records.jsonl resumes).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "results" / "strength"
METRICS = ("psnr", "lpips")


def _label(s: float) -> str:
    return f"S={s:g}"


def _pair(model: str, fidelity: str | None, tmp: Path) -> tuple[Path, str]:
    """The model folder to run (with fidelity.safetensors) and where its fidelity end came from."""
    from upstep.api import resolve_model
    from upstep.model import load_model
    from upstep.strength import FIDELITY_FILE, fidelity_weights_path, write_fidelity

    folder = resolve_model(model)
    if fidelity is None:
        end = fidelity_weights_path(folder)
        if end is None:
            raise SystemExit(f"{folder} has no fidelity end ({FIDELITY_FILE} or a shipped model named in its "
                             "config); give --fidelity MODEL (the model it was fine-tuned from) to make the pair "
                             "in a temporary folder")
        return folder, (f"{folder.name}/{FIDELITY_FILE}" if end.parent == folder
                        else f"the shipped {end.parent.name} (named in {folder.name}/config.json)")
    pair = tmp / folder.name
    shutil.copytree(folder, pair)
    write_fidelity(pair, load_model(resolve_model(fidelity)), source=fidelity)
    return pair, f"{fidelity} (written beside a copy of {folder.name} by upstep.strength.write_fidelity)"


def monotonicity(out: Path, set_name: str, strengths: list[float], metric: str) -> dict:
    """Each step between neighbouring S judged against the direction of the ends, per image."""
    from upstep.evaluate.ablation import DID_NOT_HOLD, paired_claim, per_image

    vals = {s: per_image(out, set_name, _label(s), metric) for s in strengths}
    ends = paired_claim(vals[strengths[0]], vals[strengths[-1]], higher_is_better=True)
    rising = ends["diff"] > 0
    steps = []
    for a, b in zip(strengths, strengths[1:]):
        c = paired_claim(vals[a], vals[b], higher_is_better=rising)  # "b moves the way the ends do"
        steps.append({"from": a, "to": b, "diff": c["diff"], "se": c["se"], "n": c["n"], "verdict": c["verdict"]})
    return {"direction": "rises" if rising else "falls", "ends": {"diff": ends["diff"], "se": ends["se"]},
            "steps": steps, "monotone_within_noise": all(s["verdict"] != DID_NOT_HOLD for s in steps)}


def _markdown(res: dict) -> str:
    from upstep.evaluate.report import md_table, provenance_md

    S = res["strengths"]
    parts = [f"# PSNR-Y and LPIPS against strength: `{res['model']}`", "", provenance_md(res), "",
             f"Fidelity end (S = 0): {res['fidelity']}. θ(S) = θ_fid + S (θ_perc − θ_fid) "
             "(network interpolation, `upstep.strength`); S = 1 is the model as shipped. ",
             "PSNR: Y channel, 4 px border cropped, uint8-quantised; LPIPS: alex v0.1, RGB, same crop "
             "(`upstep eval`'s conventions). s/image: median wall time on this machine (one thread).", "",
             "Monotone within the noise: each step between neighbouring S is a paired per-image difference "
             "judged against the direction of the two ends; a step that goes the other way by more than "
             "2 SE breaks it.", ""]
    for set_name, s in res["sets"].items():
        rows = [[m] + [r.get(k, float("nan")) for k in METRICS] + [r["median_seconds"]]
                for m, r in s["methods"].items()]
        parts += [f"## {set_name} ({s['images']} images)", "",
                  md_table(["method", "psnr ↑", "lpips ↓", "s/image"], rows), ""]
        for metric in METRICS:
            mono = res["monotonicity"][set_name][metric]
            steps = "; ".join(f"{st['from']:g}→{st['to']:g}: {st['diff']:+.4f} ± {st['se']:.4f} ({st['verdict']})"
                              for st in mono["steps"])
            parts += [f"- {metric} {mono['direction']} with S; monotone within the noise: "
                      f"**{'yes' if mono['monotone_within_noise'] else 'no'}** — steps: {steps}"]
        parts.append("")
    steps = [(set_name, metric, st) for set_name, per in res["monotonicity"].items() for metric, mono in per.items()
             for st in mono["steps"]]
    against = [(n, m, st) for n, m, st in steps if st["verdict"] == "did not hold"]
    worst = max(against, key=lambda x: abs(x[2]["diff"]) / x[2]["se"], default=None)
    parts += [f"Across sets and metrics, {len(against)} of {len(steps)} steps go against the ends' direction beyond "
              "2 SE" + (f" (largest: {worst[0]} {worst[1]} {worst[2]['from']:g}→{worst[2]['to']:g}, "
                        f"{abs(worst[2]['diff']) / worst[2]['se']:.1f} SE)" if worst else "")
              + f". For scale: {len(steps)} one-sided tests at 2 SE would give about {len(steps) * 0.0228:.2f} "
              "such breaches by chance alone if every true step went the ends' way.", ""]
    return "\n".join(parts)


def _figure(plt, res: dict):
    S = res["strengths"]
    sets = list(res["sets"])
    fig, axes = plt.subplots(2, len(sets), figsize=(3.4 * len(sets), 5.6), squeeze=False)
    for j, set_name in enumerate(sets):
        meths = res["sets"][set_name]["methods"]
        for i, metric in enumerate(METRICS):
            ax = axes[i][j]
            ax.plot(S, [meths[_label(s)][metric] for s in S], "o-", label=res["model"])
            ax.axhline(meths["bicubic"][metric], ls="--", lw=1, color="gray", label="bicubic")
            ax.set_xlabel("strength S")
            ax.set_title(f"{set_name}: {metric} {'↑' if metric == 'psnr' else '↓'}", fontsize=9)
        axes[0][j].legend(fontsize=7)
    fig.suptitle(f"PSNR-Y and LPIPS-alex against strength ({res['model']}; S = 0: fidelity end)", fontsize=10)
    return fig


def main() -> None:
    import upstep
    from upstep.evaluate.methods import add_arguments, evaluate_from_args, file_stamp, write_report
    from upstep.evaluate.report import provenance
    from upstep.peers import BicubicPeer
    from upstep.strength import fidelity_weights_path

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default-x4", help="shipped model name or model folder")
    ap.add_argument("--fidelity", default=None, help="its fidelity model, when the model folder has no fidelity.safetensors")
    ap.add_argument("--strengths", default="0,0.25,0.5,0.75,1")
    add_arguments(ap, "set14,bsd100,realsr_canon", OUT)
    a = ap.parse_args()

    strengths = sorted({float(s) for s in a.strengths.split(",")})
    out = Path(a.out)
    with tempfile.TemporaryDirectory() as tmp:
        folder, fid_source = _pair(a.model, a.fidelity, Path(tmp))
        up = upstep.load(folder, device="cpu", dtype="float32", backend="torch")  # reference numbers
        bicubic = BicubicPeer()
        methods = {"bicubic": lambda lr: bicubic.upscale(lr, up.scale)}
        methods.update({_label(s): (lambda lr, s=s: up.upscale_tensor(lr, strength=s)) for s in strengths})
        ev = evaluate_from_args(a, methods, up.scale, file_stamp(folder / "model.safetensors", fidelity_weights_path(folder)),
                                METRICS)
    res = {"model": a.model, "fidelity": fid_source, "scale": up.scale, "strengths": strengths, "limit": a.limit,
           **provenance(["python"] + sys.argv), **ev,
           "monotonicity": {s: {m: monotonicity(out, s, strengths, m) for m in METRICS} for s in ev["sets"]}}
    write_report(out, res, _markdown(res), _figure, "strength.png")


if __name__ == "__main__":
    main()
