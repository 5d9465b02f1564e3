"""Paired per-image comparison of methods in an `upstep eval` results folder.

    python benchmarks/paired_vs.py EVAL_DIR --method model@1 --against bicubic,realesr-general-x4v3
    python benchmarks/paired_vs.py EVAL_DIR --previous docs/results/eval_fidelity_x4_shipped   # vs the model it replaces

For every set in EVAL_DIR/records.jsonl and every metric there (psnr, lpips, ...), the mean
per-image difference method − other and its standard error, with the three-way verdict of
``upstep.evaluate.ablation`` ("held" = the method is better beyond 2 SE). Writes
EVAL_DIR/paired.md and paired.json; the records stay the only source of the figures.
``--previous DIR`` adds the method of another `upstep eval` folder (its model@1, labelled
"previous"), on the sets and images both runs measured (same images and metrics conventions;
model outputs are deterministic, so the pairing holds across runs); it writes paired_previous.*.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "ms_ssim": True, "lpips": False, "niqe": False}


def main(argv=None) -> int:
    from upstep.evaluate.ablation import paired_claim

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("eval_dir")
    ap.add_argument("--method", default="model@1")
    ap.add_argument("--against", default="bicubic")
    ap.add_argument("--previous", default=None, help="another eval folder whose model@1 is compared as 'previous'")
    a = ap.parse_args(argv)
    out = Path(a.eval_dir)
    for folder in (out, *([Path(a.previous)] if a.previous else [])):
        if not (folder / "records.jsonl").is_file():
            raise SystemExit(f"{folder}: no records.jsonl; give the --out folder of an `upstep eval` run")
    recs = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines() if line.strip()]
    stem = "paired"
    if a.previous:
        prev = [json.loads(line) for line in (Path(a.previous) / "records.jsonl").read_text().splitlines() if line.strip()]
        recs += [{**r, "method": "previous"} for r in prev if r["method"] == "model@1"]
        a.against, stem = "previous", "paired_previous"
    sets = sorted({r["set"] for r in recs}, key=[r["set"] for r in recs].index)
    rows, res = [], []
    for s in sets:
        for other in a.against.split(","):
            for metric, higher in HIGHER_IS_BETTER.items():
                mine = {r["image"]: r[metric] for r in recs if r["set"] == s and r["method"] == a.method and metric in r}
                theirs = {r["image"]: r[metric] for r in recs if r["set"] == s and r["method"] == other and metric in r}
                if not mine or not theirs:
                    continue
                c = paired_claim(theirs, mine, higher)   # is mine better than theirs?
                res.append({"set": s, "against": other, "metric": metric, **c})
                rows.append(f"| {s} | {other} | {metric} | {c['diff']:+.4f} ± {c['se']:.4f} | {c['n']} | {c['verdict']} |")
    (out / f"{stem}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = [f"# {a.method} against {a.against} (paired per image)", "",
          f"`python benchmarks/paired_vs.py {' '.join(argv if argv is not None else sys.argv[1:])}` — read from "
          "records.jsonl of the `upstep eval` run in this folder (its results.md has the command, machine, date)"
          + (f" and of {a.previous} (\"previous\")" if a.previous else "") + ".", "",
          f"Difference = {a.method} − other (mean over images ± standard error); verdict \"held\" = {a.method} is "
          "better beyond 2 SE, \"did not hold\" = worse beyond 2 SE.", "",
          "| set | other | metric | difference | images | verdict |", "|---|---|---|---|---|---|", *rows]
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
