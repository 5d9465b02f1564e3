"""Co-learning claims at small scale: Table IV (loss-path ablation), Table I (one-step student
vs the 15-step ResShift teacher) and Table III (seconds per training iteration).

    OMP_NUM_THREADS=1 python benchmarks/colearn_ablation.py [--teacher-steps 2000] \\
        [--student-steps 600] [--sets realset65,imagenet_valsr_resshift] [--limit 0]

Teacher (recipe ``resshift_teacher``): ResShift, T = 15, kappa = 2, sqrt(eta) 0.04 -> 0.999 with
power 0.3, x_0 predicted as ``y + output`` (the CPU-scale ``residual`` form), pixel-unshuffle x4
latent, U-Net [32, 64, 64] / 1 layer per block / 8 norm groups, trained on the whole HR pool
``train/`` with Real-ESRGAN second-order degradation, ``--crop`` 96 px crops, ``--batch`` 8, lr 5e-4
with cosine decay, bf16 autocast, ``--teacher-steps`` optimiser steps.

Student arms (recipe ``colearn``), each initialised from that teacher and trained for the same
``--student-steps`` with the same seed, data, batch, crop and lr; every arm keeps eq. 7's
L_denoise term (ResShift's x_0 loss at t = T on the real pair; ``--no-denoise`` drops it from
ALL arms) and differs only in the w_t-weighted paths:

    1_distill           L_distill                                  (SinSR-style distillation)
    2_distill_hr        L_distill + L_H^G      (HR discriminator D_H)
    3_distill_lr_conv   L_distill + L_L^G      (conv downsampler G + LR discriminator D_L)
    4_all_conv          L_distill + L_H^G + L_L^G, conv G
    5_all_diffusion     L_distill + L_H^G + L_L^G, diffusion G (the student's U-Net; the full method)

Small discriminators: D_H projected, feature stages [16, 32, 64] (trained from scratch: the
paper's D_H reads a pretrained feature network, none is available offline); D_L PatchGAN 16
channels, 2 downsamplings; conv G 16 channels.

Evaluation (one-step exported models and bicubic; teacher at 15 and at 1 step): ``realset65``
(LR only: NIQE) and ``imagenet_valsr_resshift`` (PSNR-Y, SSIM-Y, LPIPS-alex, NIQE), same seed
for the x_T noise everywhere. Table III is the median wall time of one optimiser step of each
run, from the run's ``log.jsonl`` (intervals between logged steps; intervals holding a
validation pass or crossing a resume are left out) — all runs on the same machine in the same
invocation unless resumed. Training runs live in ``runs/colearn_ablation/<arm>`` and resume;
evaluation records resume too (and are discarded when the model they measured changed).
Writes ``docs/results/colearn/{results.json,results.md,table4.png}`` (``--out``).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "colearn"
RUNS = ROOT / "runs" / "colearn_ablation"
SETS = "realset65,imagenet_valsr_resshift"
METRICS = ["psnr", "ssim", "lpips", "niqe"]
T_STEPS = 15

DATA = {"train_dirs": ["train"], "crop": 96, "scale": 4, "degradation": "realesrgan",
        "val_fraction": 0.02, "val_images": 8}
UNET = {"latent_channels": 48, "block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 8}
TEACHER_MODEL = {
    "default_steps": T_STEPS,
    "resshift": {"T": T_STEPS, "kappa": 2.0, "sqrt_eta_1": 0.04, "sqrt_eta_T": 0.999, "power": 0.3,
                 "x0_param": "residual", "normalize_input": True},
    "autoencoder": {"kind": "pixel_unshuffle", "factor": 4},
    "unet": UNET,
}
TRAIN = {"batch": 8, "lr": 5e-4, "lr_schedule": "cosine", "ema": 0.999, "ema_warmup": 100,
         "mixed_precision": "bf16", "checkpoint_every": 250, "val_every": 10**9,  # = once, at the end
         "grad_clip": 1.0}
COLEARN = {"use_distill": True, "use_denoise": True, "denoise_t": "terminal", "w": 1.0, "w_ramp_steps": 0,
           "lambda_hr": 0.1, "lambda_lr": 0.1,
           "hr_disc": {"channels": [16, 32, 64]}, "lr_disc": {"channels": 16, "n_down": 2},
           "conv_downsampler": {"channels": 16}}
ARMS = {
    "1_distill": {"use_hr_disc": False, "use_lr_disc": False},
    "2_distill_hr": {"use_hr_disc": True, "use_lr_disc": False},
    "3_distill_lr_conv": {"use_hr_disc": False, "use_lr_disc": True, "downsampler": "conv"},
    "4_all_conv": {"use_hr_disc": True, "use_lr_disc": True, "downsampler": "conv"},
    "5_all_diffusion": {"use_hr_disc": True, "use_lr_disc": True, "downsampler": "diffusion"},
}
ARM_LABEL = {"1_distill": "distill", "2_distill_hr": "distill + D_H", "3_distill_lr_conv": "distill + D_L (conv G)",
             "4_all_conv": "all three, conv G", "5_all_diffusion": "all three, diffusion G"}


def _train_cfg(steps: int, args) -> dict:
    t = copy.deepcopy(TRAIN)
    t.update(steps=steps, batch=args.batch, warmup=min(100, steps // 10), log_every=max(1, min(50, steps // 10)),
             checkpoint_every=min(250, steps))
    return t


def teacher_config(args) -> dict:
    return {"name": "colearn_teacher", "recipe": "resshift_teacher", "seed": args.seed,
            "data": {**DATA, "crop": args.crop}, "model": copy.deepcopy(TEACHER_MODEL),
            "train": _train_cfg(args.teacher_steps, args)}


def arm_config(arm: str, teacher: Path, args) -> dict:
    c = {**copy.deepcopy(COLEARN), **ARMS[arm], "use_denoise": not args.no_denoise}
    t = _train_cfg(args.student_steps, args)
    t["lr"] = args.student_lr
    return {"name": arm, "recipe": "colearn", "seed": args.seed, "teacher": str(teacher.resolve()),
            "data": {**DATA, "crop": args.crop}, "colearn": c, "train": t}


def run(cfg: dict, run_dir: Path) -> Path:
    """Train (or resume, or reuse) ``cfg`` in ``run_dir``; refuses a run dir made by another config."""
    from upstep.train.loop import train

    saved = run_dir / "config.json"
    if saved.is_file() and json.loads(saved.read_text()) != json.loads(json.dumps(cfg)):
        raise SystemExit(f"{run_dir} was trained with a different config (budget, crop, batch...); "
                         "pass another --runs folder or delete it")
    if not (run_dir / "model" / "model.safetensors").is_file():
        print(f"training {cfg['name']} ({cfg['train']['steps']} steps) in {run_dir}", flush=True)
        train(cfg, run_dir, progress=False)
    return run_dir / "model"


def timed(cfg: dict, steps: int) -> dict:
    """Table III measured cleanly: ``steps`` optimiser steps of ``cfg`` in a throw-away run folder,
    logging every step, so every variant is timed back to back on an otherwise idle machine."""
    import tempfile

    from upstep.train.loop import train

    c = copy.deepcopy(cfg)
    c["train"].update(steps=steps, log_every=1, checkpoint_every=steps, val_every=0, warmup=0)
    with tempfile.TemporaryDirectory() as d:
        train(c, Path(d), progress=False)
        return seconds_per_iteration(Path(d) / "log.jsonl")


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def evaluate_model(folder: Path, steps: list[int], out: Path, args) -> dict:
    """``upstep.evaluate.runner.evaluate`` with its resumable records, restarted when the model changed."""
    from upstep.evaluate.runner import evaluate

    stamp, digest = out / "model_sha1.txt", _sha1(folder / "model.safetensors")
    fresh = not stamp.is_file() or stamp.read_text().strip() != digest
    out.mkdir(parents=True, exist_ok=True)
    res = evaluate(str(folder), args.sets, steps, out, peers="none", limit=args.limit, metrics=METRICS,
                   fresh=fresh, progress=False, command=["(colearn_ablation)"])
    stamp.write_text(digest + "\n")
    return res


def seconds_per_iteration(log_path: Path) -> dict:
    """Median seconds per optimiser step from ``log.jsonl``: ``elapsed_s`` is the wall time since
    the start of the current invocation, logged at ``step`` (steps done). Intervals between
    consecutive records; an interval ending at a record with validation results (the pass ran
    before it was logged) or whose elapsed time goes backwards (a resume) is left out."""
    recs = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    per, prev = [], {"step": 0, "elapsed_s": 0.0}
    for r in recs:
        ds, dt = r["step"] - prev["step"], r["elapsed_s"] - prev["elapsed_s"]
        if ds > 0 and dt > 0 and not any(k.startswith("val_") for k in r):
            per.append(dt / ds)
        prev = r
    return {"median_s_per_iter": statistics.median(per) if per else float("nan"), "intervals": len(per),
            "steps_logged": recs[-1]["step"] if recs else 0}


def trained_params(cfg: dict) -> float:
    """Millions of trained parameters of a run (every network the recipe updates)."""
    from upstep.nn.discriminators import build_discriminator
    from upstep.nn.downsamplers import build_downsampler
    from upstep.nn.unet import build_unet

    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    total = n(build_unet(UNET))
    c = cfg.get("colearn")
    if c is not None:
        if c["use_hr_disc"]:
            total += n(build_discriminator("projected", c["hr_disc"]))
        if c["use_lr_disc"]:
            total += n(build_discriminator("patch", c["lr_disc"]))
            g = ({"scale": cfg["data"]["scale"], **c["conv_downsampler"]} if c["downsampler"] == "conv"
                 else {"unet": UNET})
            total += n(build_downsampler(c["downsampler"], g))
    return total / 1e6


def _cols(result: dict, sets: list[str]) -> list[tuple[str, str]]:
    """(set, metric) columns present in an evaluation result."""
    out = []
    for s in sets:
        row = result["sets"][s]["methods"]["bicubic"]
        out += [(s, m) for m in METRICS if m in row]
    return out


def _header(cols) -> list[str]:
    from upstep.metrics import HIGHER_IS_BETTER

    short = {"imagenet_valsr_resshift": "ImageNet-Val", "realset65": "RealSet65"}
    name = {"psnr": "PSNR-Y", "ssim": "SSIM-Y", "lpips": "LPIPS", "niqe": "NIQE"}
    return [f"{short.get(s, s)} {name[m]} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for s, m in cols]


def main() -> None:
    global OUT, RUNS
    from upstep.evaluate.report import md_table, provenance, provenance_md, write_json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher-steps", type=int, default=2000)
    ap.add_argument("--student-steps", type=int, default=600, help="budget of every student arm")
    ap.add_argument("--student-lr", type=float, default=2e-4, help="lr of the students, G and the discriminators")
    ap.add_argument("--crop", type=int, default=96, help="HR crop, px (teacher and students)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-denoise", action="store_true", help="drop eq. 7's L_denoise from every arm")
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--limit", type=int, default=0, help="first N images per set (0 = all)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--timing-steps", type=int, default=0,
                    help="time Table III by running N steps of every variant back to back "
                         "(0: read it from the training runs' logs)")
    args = ap.parse_args()
    OUT, RUNS = args.out, args.runs
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    command = ["python", "benchmarks/colearn_ablation.py", *sys.argv[1:]]

    # ---- training: the teacher, then the five arms from it --------------------------------
    tcfg = teacher_config(args)
    teacher = run(tcfg, RUNS / "teacher")
    cfgs = {arm: arm_config(arm, teacher, args) for arm in ARMS}
    models = {arm: run(cfg, RUNS / arm) for arm, cfg in cfgs.items()}

    # ---- Table III: seconds per training iteration -----------------------------------------
    if args.timing_steps:
        speed = {"teacher": {**timed(tcfg, args.timing_steps), "params_M": trained_params(tcfg)}}
        for arm, cfg in cfgs.items():
            speed[arm] = {**timed(cfg, args.timing_steps), "params_M": trained_params(cfg)}
        how = f"timed over {args.timing_steps} steps of each variant run back to back in this run"
    else:
        speed = {"teacher": {**seconds_per_iteration(RUNS / "teacher" / "log.jsonl"), "params_M": trained_params(tcfg)}}
        for arm, cfg in cfgs.items():
            speed[arm] = {**seconds_per_iteration(RUNS / arm / "log.jsonl"), "params_M": trained_params(cfg)}
        how = "from each run's `log.jsonl`"

    # ---- evaluation ------------------------------------------------------------------------
    evals = {arm: evaluate_model(folder, [1], OUT / arm, args) for arm, folder in models.items()}
    evals["teacher"] = evaluate_model(teacher, [1, T_STEPS], OUT / "teacher", args)
    sets = args.sets
    cols = _cols(evals["teacher"], sets)

    def row_of(res: dict, method: str) -> list:
        return [res["sets"][s]["methods"][method].get(m, float("nan")) for s, m in cols]

    def secs(res: dict, method: str) -> float:
        return res["sets"][sets[-1]]["methods"][method]["median_seconds"]

    table4 = {ARM_LABEL[a]: dict(zip([f"{s}/{m}" for s, m in cols], row_of(r, "model@1"))) for a, r in evals.items()
              if a in ARMS}
    table4["bicubic"] = dict(zip([f"{s}/{m}" for s, m in cols], row_of(evals["teacher"], "bicubic")))
    table1_rows = [("ResShift teacher", T_STEPS, evals["teacher"], f"model@{T_STEPS}"),
                   ("ResShift teacher", 1, evals["teacher"], "model@1"),
                   (f"student: {ARM_LABEL['5_all_diffusion']}", 1, evals["5_all_diffusion"], "model@1"),
                   (f"student: {ARM_LABEL['1_distill']}", 1, evals["1_distill"], "model@1"),
                   ("bicubic", 0, evals["teacher"], "bicubic")]

    prov = provenance(command)
    budget = {"teacher_steps": args.teacher_steps, "student_steps": args.student_steps, "batch": args.batch,
              "crop": args.crop, "seed": args.seed, "student_lr": args.student_lr,
              "use_denoise": not args.no_denoise}
    summary = {
        "budget": budget, "sets": sets, "limit": args.limit, "metrics": METRICS,
        "arms": {a: {"label": ARM_LABEL[a], "colearn": cfgs[a]["colearn"], "model": str(models[a]),
                     "eval": evals[a]["sets"]} for a in ARMS},
        "teacher": {"model": str(teacher), "config": tcfg, "eval": evals["teacher"]["sets"]},
        "table4": table4,
        "table1": [{"method": n, "nfe": k, **dict(zip([f"{s}/{m}" for s, m in cols], row_of(r, meth))),
                    "median_seconds_per_image": secs(r, meth)} for n, k, r, meth in table1_rows],
        "table3": speed, "conventions": evals["teacher"]["conventions"], **prov,
    }
    write_json(OUT / "results.json", summary)

    hdr = _header(cols)
    last = {"imagenet_valsr_resshift": "ImageNet-Val", "realset65": "RealSet65"}.get(sets[-1], sets[-1])
    lines = [
        "# Co-learning at small scale: loss-path ablation, teacher vs one-step student, training cost", "",
        provenance_md(prov), "",
        f"Budget: ResShift teacher {args.teacher_steps} optimiser steps; every student arm {args.student_steps} "
        f"steps from that teacher (lr {args.student_lr:g}, cosine), all with batch {args.batch}, {args.crop}-px "
        f"crops of the `train/` pool, Real-ESRGAN degradation, seed {args.seed}, bf16 autocast. Every arm keeps "
        f"eq. 7's L_denoise term ({'on' if not args.no_denoise else 'off'}) and differs only in the w_t-weighted "
        "paths; arm definitions in the benchmark's docstring. "
        + (f"First {args.limit} images per set. " if args.limit else "")
        + "PSNR/SSIM on Y with 4 px cropped, uint8 outputs; LPIPS-alex; NIQE (pyiqa convention); "
        "the same x_T noise seed for every model.", "",
        "The paper's HR discriminator D_H projects through a pretrained feature network (StyleGAN-T's "
        "frozen DINO); here that feature network is trained from scratch with the heads, because no "
        "pretrained weights are available offline.", "",
        "## Table IV — ablation of the loss paths (one-step students)", "",
        md_table(["arm"] + hdr, [[ARM_LABEL[a]] + row_of(evals[a], "model@1") for a in ARMS]
                 + [["bicubic"] + row_of(evals["teacher"], "bicubic")]), "",
        "## Table I (small) — 15-step teacher vs one-step students", "",
        md_table(["method", "NFE"] + hdr + [f"s/image ({last})"],
                 [[n, k] + row_of(r, meth) + [secs(r, meth)] for n, k, r, meth in table1_rows]), "",
        "## Table III — training cost", "",
        "Median wall seconds per optimiser step (data, degradation, teacher sampling, every network's "
        f"update), {how}; same machine, {prov['machine'].get('torch_threads')} torch "
        "thread(s).", "",
        md_table(["run", "trained params (M)", "s / iteration", "intervals"],
                 [["ResShift teacher", speed["teacher"]["params_M"], speed["teacher"]["median_s_per_iter"],
                   speed["teacher"]["intervals"]]]
                 + [[ARM_LABEL[a], speed[a]["params_M"], speed[a]["median_s_per_iter"], speed[a]["intervals"]]
                    for a in ARMS]), "",
    ]
    (OUT / "results.md").write_text("\n".join(lines))
    _plot(evals, sets)
    print("\n".join(lines))


def _plot(evals: dict, sets: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [(s, "niqe") for s in sets] + [(s, "lpips") for s in sets
                                            if "lpips" in evals["teacher"]["sets"][s]["methods"]["bicubic"]]
    names = list(ARMS) + ["bicubic"]
    labels = [ARM_LABEL.get(a, a) for a in names]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (s, m) in zip(axes[0], panels):
        vals = [(evals["teacher"] if a == "bicubic" else evals[a])["sets"][s]["methods"]
                ["bicubic" if a == "bicubic" else "model@1"].get(m, float("nan")) for a in names]
        x = np.arange(len(names))
        ax.bar(x, vals, color=[f"C{i}" for i in range(len(ARMS))] + ["gray"])
        tea = evals["teacher"]["sets"][s]["methods"][f"model@{T_STEPS}"].get(m)
        if tea is not None:
            ax.axhline(tea, ls="--", color="k", lw=1, label=f"teacher @{T_STEPS}")
            ax.legend(fontsize=7)
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{s}: {m.upper()} ↓ (1 step)")
    fig.tight_layout()
    fig.savefig(OUT / "table4.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
