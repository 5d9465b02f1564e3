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
``--student-steps`` with the same data, batch, crop and lr, once per ``--seeds`` seed; arms 1-5
keep eq. 7's L_denoise term (ResShift's x_0 loss at t = T on the real pair; ``--no-denoise``
drops it from them) and differ only in the w_t-weighted paths:

    0_distill_pure      L_distill alone, no L_denoise              (pure distillation, SinSR)
    1_distill           L_distill                                  (+ L_denoise, as in every arm below)
    2_distill_hr        L_distill + L_H^G      (HR discriminator D_H)
    3_distill_lr_conv   L_distill + L_L^G      (conv downsampler G + LR discriminator D_L)
    4_all_conv          L_distill + L_H^G + L_L^G, conv G
    5_all_diffusion     L_distill + L_H^G + L_L^G, diffusion G (the student's U-Net; the full method)

D_H (``--hr-disc``): ``pretrained`` (default) projects through the frozen, pretrained
EfficientNet-Lite0 (the shipped perceptual models' discriminator: heads of 64 channels on its
feature taps, DiffAugment colour / translation / cutout), as StyleGAN-T's D_H projects through a
frozen pretrained network; ``scratch`` is the earlier small feature network trained with its heads
(stages [16, 32, 64], no augmentation). D_L PatchGAN 16 channels, 2 downsamplings; conv G 16 channels.

Seeds: the teacher is trained once (``--seed``); each student arm is trained once per seed in
``--seeds`` (runs ``runs/colearn_ablation/seed{s}/<arm>``) and the tables give the mean over seeds
with the (min–max) range.

Evaluation (one-step exported models and bicubic; teacher at 15 and at 1 step): ``realset65``
(LR only: NIQE) and ``imagenet_valsr_resshift`` (PSNR-Y, SSIM-Y, LPIPS-alex, NIQE), same seed
for the x_T noise everywhere. Table III is the median wall time of one optimiser step of each
run of the first seed, from the run's ``log.jsonl`` (intervals between logged steps; intervals holding a
validation pass or crossing a resume are left out) — all runs on the same machine in the same
invocation unless resumed. Training runs resume; evaluation records resume too (and are
discarded when the model they measured changed): ``upstep.evaluate.ablation``.
Writes ``docs/results/colearn/{results.json,results.md,table4.png}`` (``--out``); ``--report-only``
rewrites them from ``--out/results.json`` without training or evaluating (claims re-judged).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
from pathlib import Path

from upstep.evaluate.ablation import Arm, claim_text, compare, fmt_mean_range, mean_and_range, run_arms, train_run

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
           "lr_disc": {"channels": 16, "n_down": 2},
           "conv_downsampler": {"channels": 16}}
HR_DISC = {"scratch": {"channels": [16, 32, 64]},
           "pretrained": {"features": "efficientnet_lite0", "augment": ["color", "translation", "cutout"],
                          "head_channels": 64}}
ARMS = {
    "0_distill_pure": {"use_hr_disc": False, "use_lr_disc": False, "use_denoise": False},
    "1_distill": {"use_hr_disc": False, "use_lr_disc": False},
    "2_distill_hr": {"use_hr_disc": True, "use_lr_disc": False},
    "3_distill_lr_conv": {"use_hr_disc": False, "use_lr_disc": True, "downsampler": "conv"},
    "4_all_conv": {"use_hr_disc": True, "use_lr_disc": True, "downsampler": "conv"},
    "5_all_diffusion": {"use_hr_disc": True, "use_lr_disc": True, "downsampler": "diffusion"},
}
ARM_LABEL = {"0_distill_pure": "distill only (no L_denoise)", "1_distill": "distill", "2_distill_hr": "distill + D_H", "3_distill_lr_conv": "distill + D_L (conv G)",
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


def arm_config(arm: str, teacher: Path, args, seed: int) -> dict:
    c = {**copy.deepcopy(COLEARN), "use_denoise": not args.no_denoise, "hr_disc": copy.deepcopy(HR_DISC[args.hr_disc]),
         **ARMS[arm]}
    t = _train_cfg(args.student_steps, args)
    t["lr"] = args.student_lr
    return {"name": arm, "recipe": "colearn", "seed": seed, "teacher": str(teacher.resolve()),
            "data": {**DATA, "crop": args.crop}, "colearn": c, "train": t}


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


# Table IV's claims (the paper's, plus what issue 11 asks of the pure-distillation arm and the
# teacher): (claim, baseline row, row that should beat it). Rows are arm names or the teacher's.
TEACHER_1, TEACHER_T = "teacher@1", f"teacher@{T_STEPS}"
CLAIMS = [
    ("each loss path helps: + D_H", "1_distill", "2_distill_hr"),
    ("each loss path helps: + D_L (conv G)", "1_distill", "3_distill_lr_conv"),
    ("all three beat distillation alone (conv G)", "1_distill", "4_all_conv"),
    ("all three beat distillation alone (diffusion G)", "1_distill", "5_all_diffusion"),
    ("diffusion G beats conv G", "4_all_conv", "5_all_diffusion"),
    ("L_denoise helps (distill vs pure distillation)", "0_distill_pure", "1_distill"),
    (f"full student (diffusion G) vs the {T_STEPS}-step teacher", TEACHER_T, "5_all_diffusion"),
    ("full student (diffusion G) vs the teacher at 1 step", TEACHER_1, "5_all_diffusion"),
]


def claims(cells: dict[str, dict[str, dict]], cols: list[tuple[str, str]]) -> dict:
    """For every claim and (set, metric) column: ``compare`` of the two rows' seed cells
    (``mean_and_range``), i.e. whether the claimed row is better and whether the difference is
    larger than the seed range. ``cells[row]["set/metric"]``."""
    from upstep.metrics import HIGHER_IS_BETTER

    return {name: {f"{s}/{m}": compare(cells[base][f"{s}/{m}"], cells[other][f"{s}/{m}"], HIGHER_IS_BETTER[m])
                   for s, m in cols}
            for name, base, other in CLAIMS}


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
    from upstep.hardware import reuse_freed_memory

    reuse_freed_memory()  # the same tensors are allocated every training step and every eval image
    from upstep.evaluate.report import provenance, write_json

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher-steps", type=int, default=2000)
    ap.add_argument("--student-steps", type=int, default=600, help="budget of every student arm")
    ap.add_argument("--student-lr", type=float, default=2e-4, help="lr of the students, G and the discriminators")
    ap.add_argument("--crop", type=int, default=96, help="HR crop, px (teacher and students)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0, help="teacher seed (and the students' when --seeds is empty)")
    ap.add_argument("--seeds", default="", help="comma list of student seeds, e.g. 0,1: every arm once per seed; "
                    "tables give the mean and (min–max) range")
    ap.add_argument("--no-denoise", action="store_true", help="drop eq. 7's L_denoise from arms 1-5 too")
    ap.add_argument("--hr-disc", choices=sorted(HR_DISC), default="pretrained",
                    help="D_H's feature network: the frozen pretrained EfficientNet-Lite0, or one trained from scratch")
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--limit", type=int, default=0, help="first N images per set (0 = all)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--timing-steps", type=int, default=0,
                    help="time Table III by running N steps of every variant back to back "
                         "(0: read it from the training runs' logs)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite --out's results.md from its results.json (claims re-judged), training nothing")
    args = ap.parse_args()
    OUT, RUNS = args.out, args.runs
    if args.report_only:
        print(regenerate(OUT))
        return
    args.sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    command = ["python", "benchmarks/colearn_ablation.py", *sys.argv[1:]]

    # ---- training and evaluation: the teacher, then every arm from it, per seed ------------
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()] if args.seeds else [args.seed]
    eval_kw = {"sets": args.sets, "metrics": METRICS, "limit": args.limit, "command": ["(colearn_ablation)"]}
    tcfg = teacher_config(args)
    teacher = train_run(tcfg, RUNS / "teacher")
    cfgs = {(arm, sd): arm_config(arm, teacher, args, sd) for sd in seeds for arm in ARMS}
    evals: dict = {}
    for sd in seeds:
        arms = [Arm(a, lambda c=cfgs[(a, sd)], sd=sd: train_run(c, RUNS / f"seed{sd}" / c["name"]), [1]) for a in ARMS]
        for a, r in run_arms(arms, OUT / f"seed{sd}", **eval_kw).items():
            evals[(a, sd)] = r
    teacher_eval = run_arms([Arm("teacher", lambda: teacher, [1, T_STEPS])], OUT, **eval_kw)["teacher"]

    # ---- Table III: seconds per training iteration (first seed) ----------------------------
    first = seeds[0]
    if args.timing_steps:
        speed = {"teacher": {**timed(tcfg, args.timing_steps), "params_M": trained_params(tcfg)}}
        for arm in ARMS:
            speed[arm] = {**timed(cfgs[(arm, first)], args.timing_steps), "params_M": trained_params(cfgs[(arm, first)])}
        how = f"timed over {args.timing_steps} steps of each variant run back to back in this run"
    else:
        speed = {"teacher": {**seconds_per_iteration(RUNS / "teacher" / "log.jsonl"), "params_M": trained_params(tcfg)}}
        for arm in ARMS:
            speed[arm] = {**seconds_per_iteration(RUNS / f"seed{first}" / arm / "log.jsonl"),
                          "params_M": trained_params(cfgs[(arm, first)])}
        how = f"from each run's `log.jsonl` (seed {first})"

    sets = args.sets
    cols = _cols(teacher_eval, sets)
    keys = [f"{s}/{m}" for s, m in cols]

    def spread(arm: str) -> list[dict]:
        """mean_and_range over seeds of each (set, metric) column, one-step student ``arm``."""
        return [mean_and_range([evals[(arm, sd)]["sets"][s]["methods"]["model@1"].get(m, float("nan")) for sd in seeds])
                for s, m in cols]

    def single(method: str) -> list[dict]:
        return [mean_and_range([teacher_eval["sets"][s]["methods"][method].get(m, float("nan"))]) for s, m in cols]

    def secs(res: dict, method: str) -> float:
        return res["sets"][sets[-1]]["methods"][method]["median_seconds"]

    table4 = {ARM_LABEL[a]: dict(zip(keys, spread(a))) for a in ARMS}
    cells = {a: dict(zip(keys, spread(a))) for a in ARMS}
    cells[TEACHER_1], cells[TEACHER_T] = dict(zip(keys, single("model@1"))), dict(zip(keys, single(f"model@{T_STEPS}")))
    verdicts = claims(cells, cols)
    table4["ResShift teacher, 1 step"] = dict(zip(keys, single("model@1")))
    table4[f"ResShift teacher, {T_STEPS} steps"] = dict(zip(keys, single(f"model@{T_STEPS}")))
    table4["bicubic"] = dict(zip(keys, single("bicubic")))
    table1_rows = [("ResShift teacher", T_STEPS, single(f"model@{T_STEPS}"), secs(teacher_eval, f"model@{T_STEPS}")),
                   ("ResShift teacher", 1, single("model@1"), secs(teacher_eval, "model@1"))]
    table1_rows += [(f"student: {ARM_LABEL[a]}", 1, spread(a), secs(evals[(a, first)], "model@1"))
                    for a in ("5_all_diffusion", "1_distill", "0_distill_pure")]
    table1_rows.append(("bicubic", 0, single("bicubic"), secs(teacher_eval, "bicubic")))

    prov = provenance(command)
    budget = {"teacher_steps": args.teacher_steps, "student_steps": args.student_steps, "batch": args.batch,
              "crop": args.crop, "teacher_seed": args.seed, "student_seeds": seeds, "student_lr": args.student_lr,
              "use_denoise": not args.no_denoise}
    summary = {
        "budget": budget, "sets": sets, "limit": args.limit, "metrics": METRICS,
        "arms": {a: {"label": ARM_LABEL[a], "colearn": cfgs[(a, first)]["colearn"],
                     "seeds": {str(sd): {"model": evals[(a, sd)]["model"], "eval": evals[(a, sd)]["sets"]}
                               for sd in seeds}} for a in ARMS},
        "teacher": {"model": str(teacher), "config": tcfg, "eval": teacher_eval["sets"]},
        "table4": table4, "claims": verdicts,
        "table1": [{"method": n, "nfe": k, **dict(zip(keys, row)), "median_seconds_per_image": t}
                   for n, k, row, t in table1_rows],
        "table3": speed, "conventions": teacher_eval["conventions"], **prov,
    }
    summary["hr_disc"], summary["table3_how"], summary["table3_timed"] = args.hr_disc, how, bool(args.timing_steps)
    write_json(OUT / "results.json", summary)
    print(write_report(OUT, summary))


def report_markdown(summary: dict) -> str:
    """results.md from the ``results.json`` summary: Table IV, its claims, Table I and Table III."""
    from upstep.evaluate.report import md_table, provenance_md, regenerated_md

    budget, sets, prov, speed = summary["budget"], summary["sets"], summary, summary["table3"]
    seeds = budget["student_seeds"]
    keys = list(summary["table4"]["bicubic"])
    cols = [tuple(k.split("/")) for k in keys]
    hdr = _header(cols)
    table4, verdicts = summary["table4"], summary["claims"]
    table1_rows = [(r["method"], r["nfe"], [r[k] for k in keys], r["median_seconds_per_image"]) for r in summary["table1"]]
    hr_disc = summary.get("hr_disc") or next(
        (n for n, c in HR_DISC.items() if any(a["colearn"].get("hr_disc") == c for a in summary["arms"].values())),
        "pretrained")
    how = summary.get("table3_how") or f"from each run's `log.jsonl` (seed {seeds[0]})"

    def fmt(row: list[dict]) -> list[str]:
        return [fmt_mean_range(r, 2 if m in ("psnr", "niqe") else 3) for r, (_, m) in zip(row, cols)]

    last = {"imagenet_valsr_resshift": "ImageNet-Val", "realset65": "RealSet65"}.get(sets[-1], sets[-1])
    seed_text = (f"student seed {seeds[0]}" if len(seeds) == 1 else
                 f"student seeds {', '.join(map(str, seeds))}: cells are the mean with the (min–max) range over seeds")
    lines = [
        "# Co-learning at small scale: loss-path ablation, teacher vs one-step student, training cost", "",
        provenance_md(prov), "", *regenerated_md(summary),
        f"Budget: ResShift teacher {budget['teacher_steps']} optimiser steps (seed {budget['teacher_seed']}); every student arm "
        f"{budget['student_steps']} steps from that teacher (lr {budget['student_lr']:g}, cosine), all with batch {budget['batch']}, "
        f"{budget['crop']}-px crops of the `train/` pool, Real-ESRGAN degradation, bf16 autocast; {seed_text}. Arms 1–5 keep "
        f"eq. 7's L_denoise term ({'on' if budget['use_denoise'] else 'off'}) and differ only in the w_t-weighted "
        "paths; the pure-distillation arm has no L_denoise; arm definitions in the benchmark's docstring. "
        + (f"First {summary['limit']} images per set. " if summary['limit'] else "")
        + "PSNR/SSIM on Y with 4 px cropped, uint8 outputs; LPIPS-alex; NIQE (pyiqa convention); "
        "the same x_T noise seed for every model.", "",
        ("The paper's HR discriminator D_H projects through a frozen pretrained feature network (StyleGAN-T's "
         "DINO); here D_H projects through the frozen, pretrained EfficientNet-Lite0 (heads of 64 channels, "
         "DiffAugment colour / translation / cutout)." if hr_disc == "pretrained" else
         "The paper's HR discriminator D_H projects through a frozen pretrained feature network (StyleGAN-T's "
         "DINO); in this run (`--hr-disc scratch`) the feature network is trained from scratch with the heads."), "",
        "## Table IV — ablation of the loss paths (one-step students; the teacher for reference)", "",
        md_table(["arm"] + hdr, [[label] + fmt(list(row.values())) for label, row in table4.items()]), "",
        "## Claims (Table IV)", "",
        "\"held\": the second row is better than the first (PSNR higher; LPIPS, NIQE lower) and the two rows' "
        "seed ranges (min–max over seeds; the teacher is one run) do not overlap; \"did not hold\": worse, "
        "ranges apart; \"not distinguishable\": the ranges overlap (or, with one seed, the noise is not measured).",
        "",
        md_table(["claim"] + hdr, [[name] + [claim_text(v[k], 2 if k.endswith(("psnr", "niqe")) else 3) for k in keys]
                                   for name, v in verdicts.items()]), "",
        "## Table I (small) — 15-step teacher vs one-step students", "",
        md_table(["method", "NFE"] + hdr + [f"s/image ({last})"],
                 [[n, k] + fmt(row) + [t] for n, k, row, t in table1_rows]), "",
        "## Table III — training cost", "",
        "Median wall seconds per optimiser step (data, degradation, teacher sampling, every network's "
        f"update), {how}; "
        + (f"same machine, {prov['machine'].get('torch_threads')} torch thread(s)." if summary.get("table3_timed") else
           "the threads and load of the training runs themselves (not recorded here: runs sharing the cores, "
           "or resumed in another session, are not a clean comparison; `--timing-steps N` times every variant "
           "back to back)."), "",
        md_table(["run", "trained params (M)", "s / iteration", "intervals"],
                 [["ResShift teacher", speed["teacher"]["params_M"], speed["teacher"]["median_s_per_iter"],
                   speed["teacher"]["intervals"]]]
                 + [[ARM_LABEL[a], speed[a]["params_M"], speed[a]["median_s_per_iter"], speed[a]["intervals"]]
                    for a in ARMS]), "",
    ]
    return "\n".join(lines)


def table4_cells(summary: dict) -> dict:
    """The claims' rows (arm names and the teacher's two rows) from the summary's Table IV."""
    label = {v: k for k, v in ARM_LABEL.items()}
    label.update({"ResShift teacher, 1 step": TEACHER_1, f"ResShift teacher, {T_STEPS} steps": TEACHER_T})
    return {label[name]: row for name, row in summary["table4"].items() if name in label}


def write_report(out: Path, summary: dict) -> str:
    """Write ``results.md`` and ``table4.png`` in ``out``; returns the markdown."""
    text = report_markdown(summary)
    (out / "results.md").write_text(text)
    keys = list(summary["table4"]["bicubic"])
    _plot(summary["table4"], [tuple(k.split("/")) for k in keys], out / "table4.png")
    return text


def regenerate(out: Path) -> str:
    """Re-judge the claims from ``out/results.json`` (no training or evaluation) and rewrite the report."""
    from upstep.evaluate.report import regeneration_stamp, write_json

    path = out / "results.json"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (run the benchmark without --report-only first)")
    summary = json.loads(path.read_text())
    cols = [tuple(k.split("/")) for k in summary["table4"]["bicubic"]]
    summary["claims"] = claims(table4_cells(summary), cols)
    summary["report_regenerated"] = regeneration_stamp(["python", "benchmarks/colearn_ablation.py", "--report-only",
                                                         "--out", str(out)])
    write_json(path, summary)
    return write_report(out, summary)


def _plot(table4: dict, cols: list[tuple[str, str]], path: Path) -> None:
    """Bars per arm (seed mean, range as error bar) for NIQE and LPIPS; the 15-step teacher dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [c for c in cols if c[1] == "niqe"] + [c for c in cols if c[1] == "lpips"]
    teacher15 = f"ResShift teacher, {T_STEPS} steps"
    names = [n for n in table4 if n != teacher15]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (s, m) in zip(axes[0], panels):
        cells = [table4[n][f"{s}/{m}"] for n in names]
        x = np.arange(len(names))
        err = [[c["mean"] - c["min"] for c in cells], [c["max"] - c["mean"] for c in cells]]
        ax.bar(x, [c["mean"] for c in cells], yerr=err, capsize=3,
               color=[f"C{i}" for i in range(len(names) - 1)] + ["gray"])
        tea = table4[teacher15][f"{s}/{m}"]["mean"]
        if tea == tea:
            ax.axhline(tea, ls="--", color="k", lw=1, label=f"teacher @{T_STEPS}")
            ax.legend(fontsize=7)
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=7)
        ax.set_title(f"{s}: {m.upper()} ↓ (1 step)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
