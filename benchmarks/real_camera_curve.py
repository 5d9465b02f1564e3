"""Dev LPIPS against training steps on real camera LR (issue 29): does more compute still help?

    python benchmarks/real_camera_curve.py CONFIG --run-dir RUN --steps 250,500,1000,... \
        [--init-from MODEL] [--set KEY=VALUE ...] [--out docs/results/real_camera_curve/NAME]

Trains CONFIG into RUN up to each step count in turn (``upstep train`` resumes the run; the
perceptual recipe's learning rate is constant, so extending a run does not change its past), and
after each evaluates the exported EMA model on realsr_canon with benchmarks/real_camera.py
(PSNR-Y, LPIPS-alex, one step, seed 0; bicubic in the same run). Steps already evaluated (in
the output's results.json) are skipped, so the command resumes after a stop. Writes
results.json, results.md and curve.png; the training log is RUN/log.jsonl.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--steps", required=True)
    ap.add_argument("--init-from", default=None)
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--out", required=True)
    ap.add_argument("--limit", type=int, default=0, help="first N realsr_canon images (0 = all 50)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res_path = out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.is_file() else {
        "command": "python benchmarks/real_camera_curve.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "points": []}
    done = {p["step"] for p in res["points"]}
    run = Path(a.run_dir)
    for step in (int(s) for s in a.steps.split(",")):
        if step in done:
            continue
        cmd = [sys.executable, "-m", "upstep.cli", "train", a.config, "--run-dir", str(run), "--no-progress",
               "--set", f"train.steps={step}"]
        if a.init_from:
            cmd += ["--init-from", a.init_from]
        for o in a.overrides:
            cmd += ["--set", o]
        subprocess.run(cmd, check=True)
        snap = run / f"model_step{step}"
        shutil.rmtree(snap, ignore_errors=True)
        shutil.copytree(run / "model", snap)
        ev = out / f"eval_step{step}"
        sys.path.insert(0, str(HERE))
        import real_camera

        real_camera.main(["--out", str(ev), "--model", f"step{step}={snap}", "--peers", "",
                          *(["--limit", str(a.limit)] if a.limit else [])])
        s = json.loads((ev / "results.json").read_text())
        summ = s["summary"]
        res["points"].append({"step": step, "psnr": summ[f"step{step}"]["psnr"], "lpips": summ[f"step{step}"]["lpips"],
                              "bicubic_psnr": summ["bicubic"]["psnr"], "bicubic_lpips": summ["bicubic"]["lpips"],
                              "images": s["images"], "date": s["date"], "machine": s["machine"]})
        res["points"].sort(key=lambda p: p["step"])
        res_path.write_text(json.dumps(res, indent=1) + "\n")
        shutil.rmtree(ev / "per_image", ignore_errors=True)
    md = [f"# realsr_canon against training steps", "", f"`{res['command']}`", "",
          "| step | PSNR-Y | LPIPS | images | date |", "|---|---|---|---|---|"]
    md += [f"| {p['step']} | {p['psnr']:.2f} | {p['lpips']:.4f} | {p['images']} | {p['date']} |" for p in res["points"]]
    (out / "results.md").write_text("\n".join(md) + "\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["step"] for p in res["points"]], [p["lpips"] for p in res["points"]], "o-")
    ax.set_xlabel("training steps (this run)")
    ax.set_ylabel("LPIPS-alex on realsr_canon (dev)")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
