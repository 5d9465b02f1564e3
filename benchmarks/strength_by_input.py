"""Would a strength picked per input from the LR alone help? Reads the per-image records of
``strength_curve.py`` runs (LPIPS-alex at each strength S; ``--curve`` is a run's ``--out`` folder)
and asks, per set:

- the best fixed S, and the per-image oracle (each image at its own best S; an optimistic upper
  bound, since the minimum of noisy figures is biased low);
- a no-reference rule: S_low where the LR's estimated noise σ (Immerkær 1996, "Fast noise variance
  estimation", eq. 2, on the luma in 0..255) is below a threshold, else S = 1; its mean LPIPS, paired
  against S = 1 (mean ± SE over images), for each threshold.

    python benchmarks/strength_by_input.py --curve docs/results/strength_default_x4_soup \\
        --curve docs/results/strength_default_x4_soup_imagenet --out docs/results/strength_by_input

With ``--detector DIR`` (``upstep.camera_detect``, the rule of ``--strength auto``) it also applies
S_low where the detector's P(camera-like) > 0.5, else S = 1, paired against S = 1 and, with
``--peer-results DIR`` (a folder of ``benchmarks/real_camera.py`` outputs, ``DIR/<set>/results.json``),
against the peer ``--peer`` on the same images:

    python benchmarks/strength_by_input.py --curve ... --curve ... --detector runs/camera_detector \
        --peer-results docs/results/real_camera/independent_arms --out docs/results/strength_auto

The records name dev sets; thresholds read off them are dev-set choices, not held-out figures.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from upstep.errors import UpstepError
from upstep.evaluate.ablation import paired_claim, per_image
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.evaluate.sets import open_set
from upstep.io import LUMA, read_image, to_model_rgb

# Immerkær's mask: the difference of two Laplacians, which cancels locally linear image content
IMMERKAER = torch.tensor([[1., -2., 1.], [-2., 4., -2.], [1., -2., 1.]])[None, None]


def noise_sigma(luma: torch.Tensor) -> float:
    """Estimated std of white Gaussian noise in a (H, W) image: sqrt(π/2) / (6 (W−2)(H−2)) Σ |I * N|
    (Immerkær 1996, eq. 2). Fine texture counts as noise too, so sharp clean images read higher."""
    r = F.conv2d(luma[None, None].float(), IMMERKAER)
    return float(math.sqrt(math.pi / 2) * r.abs().sum() / (6 * r.shape[-1] * r.shape[-2]))


def lr_luma(path: Path) -> torch.Tensor:
    """BT.601 luma of an image file in 0..255, any mode (``upstep.io.read_image``)."""
    return (to_model_rgb(read_image(path)) * torch.tensor(LUMA).view(3, 1, 1)).sum(0) * 255


def curve_lpips(folder: str) -> dict[str, dict[str, dict[str, float]]]:
    """{set: {"S=s": {image: LPIPS}}} of one strength_curve.py run (its results.json names the sets
    and strengths; ``ablation.per_image`` reads its records.jsonl)."""
    meta = Path(folder) / "results.json"
    if not meta.is_file():
        raise UpstepError(f"{folder}: no results.json; give the --out folder of a finished strength_curve.py run")
    info = json.loads(meta.read_text())
    try:
        return {name: {f"S={s:g}": per_image(Path(folder), name, f"S={s:g}", "lpips") for s in info["strengths"]}
                for name in info["sets"]}
    except ValueError as e:   # a missing or broken records.jsonl, or a strength without records
        raise UpstepError(str(e)) from None


def _pm(c: dict) -> str:
    return f"{c['diff']:+.4f} ± {c['se']:.4f}"


def detector_rule(detector, items: dict, images: list[str], by_s: dict, low: str, name: str,
                  peer_results: str | None, peer: str) -> dict:
    """--strength auto's rule on one set: ``low`` where P(camera-like) > 0.5, else S=1; paired
    against S=1 and, given ``peer_results``, against the peer's per-image LPIPS."""
    from upstep.camera_detect import camera_probability

    prob = {im: camera_probability(detector, to_model_rgb(read_image(items[im]))[None]) for im in images}
    rule = {im: by_s[low][im] if prob[im] > 0.5 else by_s["S=1"][im] for im in images}
    keep = ("diff", "se", "n", "verdict")
    out = {"fraction_camera": float(np.mean([prob[im] > 0.5 for im in images])),
           "mean_lpips": float(np.mean(list(rule.values()))), "probability": prob,
           "vs_S1": {k: paired_claim(by_s["S=1"], rule, higher_is_better=False)[k] for k in keep}}
    if peer_results:
        path = Path(peer_results) / name / "results.json"
        if not path.is_file():
            raise UpstepError(f"{path}: not found; --peer-results needs a real_camera.py output per set")
        rec = json.loads(path.read_text())["per_image"].get(peer)
        if rec is None:
            raise UpstepError(f"{path}: no per-image records of {peer}")
        theirs = dict(zip(rec["image"], rec["lpips"]))
        if missing := [im for im in images if im not in theirs]:
            raise UpstepError(f"{path}: {peer} lacks {', '.join(missing[:3])}; are these the same images?")
        theirs = {im: theirs[im] for im in images}
        out["vs_peer"] = {k: paired_claim(theirs, rule, higher_is_better=False)[k] for k in keep}
        out["S1_vs_peer"] = {k: paired_claim(theirs, by_s["S=1"], higher_is_better=False)[k] for k in keep}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--curve", action="append", required=True,
                    help="the --out folder of a strength_curve.py run (repeatable, one per set group)")
    ap.add_argument("--low", type=float, default=0.75, help="the strength the rule picks for low-noise LR")
    ap.add_argument("--thresholds", default="1.5,2,2.5,3", help="noise σ thresholds (0..255 luma)")
    ap.add_argument("--detector", default=None, help="a camera detector folder: also measure --strength auto's rule")
    ap.add_argument("--peer-results", default=None, help="DIR/<set>/results.json with the peer's per-image LPIPS")
    ap.add_argument("--peer", default="realesr-general-x4v3")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    detector = None
    if a.detector:
        from upstep.camera_detect import load_detector

        detector = load_detector(a.detector)
    lpips: dict[str, dict[str, dict[str, float]]] = {}
    for folder in a.curve:
        for name, by_s in curve_lpips(folder).items():
            if name in lpips:
                raise UpstepError(f"{folder}: set {name} is in another --curve too; give each set once")
            lpips[name] = by_s
    low, thresholds = f"S={a.low:g}", [float(t) for t in a.thresholds.split(",")]
    rows, rule_rows, det_rows, sets = [], [], [], {}
    for name, by_s in lpips.items():
        if low not in by_s or "S=1" not in by_s:
            raise UpstepError(f"the curve of {name} lacks {low} or S=1; run strength_curve.py with both")
        bench_set = open_set(name)
        items = {it.name: it.lr_path for it in bench_set.items}
        images = sorted(set.intersection(*(set(v) for v in by_s.values())))
        if missing := [im for im in images if items.get(im) is None]:
            raise UpstepError(f"{name}: no LR image for {', '.join(missing[:3])} in {bench_set.root}; "
                              "are the records from another copy of the set?")
        sigma = {im: noise_sigma(lr_luma(items[im])) for im in images}
        means = {s: float(np.mean([v[im] for im in images])) for s, v in by_s.items()}
        oracle = float(np.mean([min(v[im] for v in by_s.values()) for im in images]))
        gain = [by_s[low][im] - by_s["S=1"][im] for im in images]
        corr = float(np.corrcoef([sigma[im] for im in images], gain)[0, 1])
        best = min(means, key=means.get)
        sets[name] = {"n": len(images), "mean_lpips": means, "best_fixed": best, "oracle": oracle,
                      "sigma_p10_p50_p90": [float(x) for x in np.percentile(list(sigma.values()), [10, 50, 90])],
                      "corr_sigma_vs_low_minus_1": corr, "rule": {}}
        rows.append([name, len(images), means["S=1"], means[low], f"{best} ({means[best]:.4f})", oracle,
                     " / ".join(f"{x:.2f}" for x in sets[name]["sigma_p10_p50_p90"]), corr])
        for t in thresholds:
            rule = {im: by_s[low][im] if sigma[im] < t else by_s["S=1"][im] for im in images}
            c = paired_claim(by_s["S=1"], rule, higher_is_better=False)
            frac = float(np.mean([sigma[im] < t for im in images]))
            sets[name]["rule"][str(t)] = {"mean_lpips": float(np.mean(list(rule.values()))), "fraction_low": frac,
                                          "vs_S1": {k: c[k] for k in ("diff", "se", "n", "verdict")}}
            rule_rows.append([name, f"{t:g}", frac, float(np.mean(list(rule.values()))),
                              f"{c['diff']:+.4f} ± {c['se']:.4f}"])
        if detector is not None:
            sets[name]["auto"] = auto = detector_rule(detector, items, images, by_s, low, name, a.peer_results, a.peer)
            det_rows.append([name, auto["fraction_camera"], auto["mean_lpips"], _pm(auto["vs_S1"])]
                            + ([_pm(auto["vs_peer"]), _pm(auto["S1_vs_peer"])] if "vs_peer" in auto else ["—", "—"]))
    prov = provenance([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {**prov, "curves": a.curve, "low": a.low, "detector": a.detector,
                                      "peer_results": a.peer_results, "peer": a.peer, "sets": sets})
    text = ["# Strength picked per input: headroom and a no-reference noise rule", "", provenance_md(prov), "",
            "LPIPS-alex (lower is better) of the model at strength S, per set. Oracle: each image at its own best S "
            "(an optimistic bound). σ: Immerkær's noise estimate of the LR luma (0..255), 10th / 50th / 90th "
            f"percentile. corr: Pearson correlation over images of σ with LPIPS({low}) − LPIPS(S=1).", "",
            md_table(["set", "n", "S=1", low, "best fixed S", "oracle", "σ p10 / p50 / p90", "corr"], rows), "",
            f"Rule: {low} where σ < threshold, else S=1. Paired against S=1 (mean ± SE over images).", "",
            md_table(["set", "threshold", f"fraction at {low}", "mean LPIPS", "rule − S=1"], rule_rows), ""]
    if detector is not None:
        text += [f"`--strength auto`: {low} where the detector ({a.detector}) gives P(camera-like) > 0.5, else S=1. "
                 f"Paired per image (mean ± SE); the peer's LPIPS from {a.peer_results}.", "",
                 md_table(["set", "fraction camera-like", "mean LPIPS", "auto − S=1", f"auto − {a.peer}",
                           f"S=1 − {a.peer}"], det_rows), ""]
    (out / "results.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UpstepError as e:
        sys.exit(f"strength_by_input: error: {e}")
