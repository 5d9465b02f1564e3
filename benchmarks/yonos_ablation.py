"""YONOS-SR claims at small scale: Fig. 3 (quality vs DDIM steps, direct vs scale-distilled,
at x4 and x8), Table 4 (decoder fine-tuning x distillation, 1 step) and the headline (1-step
distilled + fine-tuned decoder vs the standard model at many steps).

    python benchmarks/yonos_ablation.py [--budget 1200] [--sets set14]          Fig. 3, pixel-unshuffle latent
    upstep train configs/kl_ae_small.json --run-dir runs/kl_ae_small            the KL first stage, then
    python benchmarks/yonos_ablation.py --autoencoder runs/kl_ae_small/model --latent-scaling auto \
        --decoder-steps 400 --decoder-gan-weights 0.5,0 --headline-steps 200 \
        --runs runs/yonos_kl --out docs/results/yonos_kl                          Fig. 3 + Table 4 + headline

Arms, all the same U-Net, data, batch, crop, optimiser and seed, the papers' uniform-t training
(``p_terminal`` 0), pixel-unshuffle x4 latent, residual target:

    x4: direct    standard recipe at x4 for 2B steps
        distilled x2 (standard, B steps)  ->  x4 (scale distillation, B steps)
    x8: direct    standard recipe at x8 for 3B steps
        distilled the x4 student above    ->  x8 (scale distillation, B steps)

i.e. equal TOTAL optimiser steps per arm (the teacher's training counts against the distilled
arm), which is stricter than the paper's per-stage budget. Evaluation on held-apart
benchmark sets (never the training pool): PSNR/SSIM-Y and LPIPS-alex at 1..64 DDIM steps.

With ``--autoencoder`` every arm trains in that (frozen, KL) autoencoder's latent instead, and
with ``--decoder-steps N`` each arm's decoder is then fine-tuned for N steps on its own one-step
latents (the ``decoder_finetune`` recipe, §3.3): Table 4's four cells per scale, at 1 step.
``--headline-steps`` adds step counts evaluated for the direct arms only (the many-step baseline).
The report judges each Table 4 claim (and the headline) by the paired per-image difference between
the two cells and its standard error over the test images (``table4_claims``): a single-seed run
has no seed spread to judge against, and pairing by image removes the spread the cells share.
``--crop-pool N`` trains every arm on one fixed pool of N crops; in a KL latent the frozen
encoder's latents of the pool are then computed once and shared by all arms (``train.latent_cache``
in ``RUNS/latent_cache``; on a CPU that encoder costs more than the U-Net step itself).

Weighting: ``--omega-max none`` (the default) is the paper's eq. 2 weight omega = 1 + SNR,
unclipped; ``--omega-max 5`` reproduces the 2026-11 results, which clipped every t < 0.295. The
results' metadata states which.

Sweep mode (``--budgets 1000,4000,16000 --seeds 0[,1] [--scales 4|4,8]``): every arm of every
(budget, seed) cell is trained in ``--runs/B{B}_s{seed}`` and evaluated at 1, 2, 4, 8, 16 and 64
DDIM steps into ``--out/B{B}_s{seed}/<arm>`` with PSNR/SSIM-Y, LPIPS-alex, and the patch FID
(``--fid-patches``, 1000 by default here) at 1, 4, 16 and 64 steps (``--fid-steps``; the HR and
bicubic features are computed once, in ``--out/fid_reference``); then ``sweep.json``, ``sweep.md`` (mean and seed range per
arm, budget and step count; the claims per budget) and ``sweep.png`` (LPIPS and FID vs steps, one
line per arm and budget). Cells from earlier invocations are folded into the report, so the
sweep can be run in parts.

Training runs live in ``--runs`` and resume (a run folder made with another config is refused);
evaluation records and FID features resume too (``upstep.evaluate.ablation``). ``--group direct``
and ``--group chain`` train and evaluate one half each (run both at once on 2 cores, then once
without ``--group`` to write the report). Writes ``{results.json,results.md,fig3.png}`` in ``--out``.

This file trains and evaluates; ``benchmarks/yonos_report.py`` (beside it, imported from it) writes
the report and rewrites it from the committed records without training.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from upstep.evaluate.ablation import Arm, run_arms, train_run
from yonos_report import (GAN_WEIGHT, _gan_suffix, ft_name, summarise_sweep, sweep_claims, table4_claims, weighting,
                          write_single, write_sweep)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "yonos"
RUNS = ROOT / "runs" / "yonos_ablation"
STEPS = [1, 2, 4, 8, 16, 32, 64]
SWEEP_STEPS = [1, 2, 4, 8, 16, 64]

BASE = {
    "recipe": "standard", "seed": 0,
    "data": {"train_dirs": ["train"], "crop": 128, "degradation": "bicubic", "val_fraction": 0.02,
             "val_images": 8},
    "model": {"target": "residual", "autoencoder": {"kind": "pixel_unshuffle", "factor": 4},
              "unet": {"latent_channels": 48, "block_out_channels": [32, 64, 64], "layers_per_block": 1,
                       "norm_num_groups": 8},
              "schedule": {"name": "cosine", "omega_max": 5.0}},
    "train": {"batch": 8, "lr": 5e-4, "warmup": 100, "lr_schedule": "cosine", "ema": 0.999,
              "ema_warmup": 100, "mixed_precision": "bf16", "p_terminal": 0.0, "checkpoint_every": 250,
              "val_every": 100000, "log_every": 50, "grad_clip": 1.0},
}


def stage(name: str, scale: int, steps: int, recipe: str = "standard") -> dict:
    c = copy.deepcopy(BASE)
    c.update(name=name, recipe=recipe)
    c["data"]["scale"] = scale
    c["train"]["steps"] = steps
    return c


def _group(arm: str) -> str:
    """Which --group trains and evaluates ``arm``."""
    return "direct" if arm.startswith("direct") else "chain"


def _chain(stages: list[dict], root: Path) -> Path:
    """Train the x2 -> x4 (-> x8) chain as far as ``stages`` go; refuses a chain folder made with
    other stage configs (one chain may be the other's prefix: x4 first, x8 later)."""
    from upstep.recipes.scale_distill import run_chain

    saved = root / "chain.json"
    if saved.is_file():
        old = json.loads(saved.read_text())["stages"]
        new = json.loads(json.dumps(stages))
        n = min(len(old), len(new))
        if old[:n] != new[:n]:
            raise SystemExit(f"{root} holds a chain trained with other configs (budget, seed, weighting...); "
                             "pass another --runs folder or delete it")
    out = run_chain(stages, root)
    if out is None:
        raise SystemExit(f"the chain in {root} did not finish")
    return out


def base_arms(budget: int, runs: Path, scales: list[int], groups: set[str]) -> list[Arm]:
    """Fig. 3's arms at budget B, equal total optimiser steps per arm (see the docstring)."""
    b = budget
    chain = [stage("x2", 2, b), stage("distilled_x4", 4, b, "scale_distill"),
             stage("distilled_x8", 8, b, "scale_distill")]
    arms = []
    for scale in scales:
        k = {4: 2, 8: 3}[scale]
        cfg = stage(f"direct_x{scale}", scale, k * b)
        arms.append(Arm(f"direct_x{scale}", lambda cfg=cfg: train_run(cfg, runs / cfg["name"]), STEPS))
        arms.append(Arm(f"distilled_x{scale}", lambda k=k: _chain(chain[:k], runs / "chain"), STEPS))
    return [a for a in arms if _group(a.name) in groups]




def decoder_finetune_arms(arms: list[Arm], steps: int, runs: Path, disc_weights: list[float]) -> list[Arm]:
    """Table 4's fine-tuned-decoder cells: each arm's own decoder fine-tuned on its 1-step latents,
    once per GAN weight (0.5 = the paper's loss; 0 = L1 + feature loss only). Evaluated at 1 step."""
    tuned = []
    for arm in arms:
        for w in disc_weights:
            def train_ft(arm=arm, w=w) -> Path:
                cfg = {"name": ft_name(arm.name, w), "recipe": "decoder_finetune", "seed": BASE["seed"],
                       "init_from": str(arm.train()), "data": {**BASE["data"], "scale": int(arm.name[-1])},
                       "decoder_finetune": {"perceptual_weight": 0.1, "disc_weight": w, "disc_start": 0,
                                            "disc": {"channels": 32, "n_layers": 3, "norm": "batch"}},
                       "train": {"steps": steps, "batch": BASE["train"]["batch"], "lr": 1e-4, "warmup": 0,
                                 "mixed_precision": "bf16", "checkpoint_every": 100, "val_every": 100000,
                                 "log_every": 50, "grad_clip": 1.0}}
                return train_run(cfg, runs / f"{arm.name}_decoder_ft{_gan_suffix(w)}")
            tuned.append(Arm(ft_name(arm.name, w), train_ft, [1]))
    return tuned


def decoder_reconstruction(folders: dict[str, Path], sets: list[str], limit: int = 0) -> dict[str, dict[str, dict]]:
    """Control for Table 4: {decoder: {set: {"psnr": PSNR-Y, "lpips": LPIPS-alex}}} of
    decode(encode(HR)) with each model's decoder, set means. A fine-tuned decoder that also
    reconstructs real HR latents better gained from extra decoder training in general, not (only)
    from adapting to the U-Net's one-step latents."""
    import torch

    from upstep.evaluate.sets import open_set
    from upstep.metrics import measure
    from upstep.model import load_model

    out: dict[str, dict[str, dict]] = {}
    for name, folder in folders.items():
        ae = load_model(folder).autoencoder.eval()
        out[name] = {}
        for s in sets:
            bset, vals = open_set(s), {"psnr": [], "lpips": []}
            for item in bset.items[:limit] if limit else bset.items:
                _, hr = bset.load(item, ae.factor)
                with torch.no_grad():
                    rec = (ae.decode(ae.encode(hr * 2 - 1)).clamp(-1, 1) + 1) / 2
                for metric, v in measure(rec, hr, list(vals), crop_border=4).items():
                    vals[metric] += v
            out[name][s] = {metric: sum(v) / len(v) for metric, v in vals.items()}
    return out


def residual_scaling(autoencoder: str, n: int = 64) -> float:
    """1 / RMS of the x4 residual target z_h - z_l on ``n`` training crops (unit-variance target,
    the role of Stable Diffusion's 0.18215)."""
    import torch

    from upstep.degrade.resize import imresize
    from upstep.model import load_model
    from upstep.recipes.base import make_lr
    from upstep.train.data import HRCropDataset, step_generator

    ae = load_model(autoencoder).autoencoder.eval()
    data = HRCropDataset.from_config(BASE["data"]["train_dirs"], BASE["data"]["crop"], "train")
    g = step_generator(0, 0)
    hr = data.batch(n, g)
    lr = make_lr(hr, 4, "bicubic", g)
    with torch.no_grad():
        z_h = ae.encode(hr * 2 - 1) / ae.scaling
        z_l = ae.encode(imresize(lr, size=hr.shape[-2:]) * 2 - 1) / ae.scaling
    return float(1 / (z_h - z_l).pow(2).mean().sqrt())


def _parse_omega(v: str) -> float | None:
    return None if v.lower() in ("none", "paper", "inf") else float(v)




def configure(args) -> float:
    """Set BASE's latent, scaling and weighting from the command line; returns the latent scaling."""
    if args.autoencoder:
        scaling = residual_scaling(args.autoencoder) if args.latent_scaling == "auto" else float(args.latent_scaling)
        from upstep.model import load_model
        BASE["model"]["autoencoder"] = {"from": args.autoencoder, "scaling": round(scaling, 4)}
        BASE["model"]["unet"]["latent_channels"] = load_model(args.autoencoder).autoencoder.latent_channels
    else:
        scaling = 1.0 if args.latent_scaling == "auto" else float(args.latent_scaling)
        BASE["model"]["autoencoder"]["scaling"] = scaling
    BASE["model"]["schedule"]["omega_max"] = args.omega_max
    if args.crop_pool:
        BASE["data"]["crop_pool"] = args.crop_pool
        if args.autoencoder:  # every arm (and both groups) shares the frozen encoder's latents
            BASE["train"]["latent_cache"] = str(args.runs / "latent_cache")
    return scaling


def cell(budget: int, seed: int, runs: Path, out: Path, args, *, train_only: bool, extra_direct: list[int],
         decoder_steps: int = 0, gan_weights: list[float] = ()) -> dict[str, dict]:
    """Train and evaluate every arm of one (budget, seed): runs in ``runs``, evaluations in ``out/<arm>``."""
    BASE["seed"] = seed
    groups = {args.group} if args.group else {"direct", "chain"}
    arms = base_arms(budget, runs, args.scales, groups)
    for a in arms:
        if a.name.startswith("direct"):
            a.steps = sorted(set(a.steps) | set(extra_direct))
    if decoder_steps:
        arms += decoder_finetune_arms(arms, decoder_steps, runs, list(gan_weights))
    return run_arms(arms, out, train_only=train_only, sets=args.sets, metrics=["psnr", "ssim", "lpips"],
                    limit=args.limit, fid_patches=args.fid_patches, fid_patch=args.fid_patch_size,
                    fid_steps=args.fid_steps, fid_reference=args.out / "fid_reference",
                    command=["(yonos_ablation)"])


def main() -> None:
    global STEPS
    from upstep.hardware import reuse_freed_memory

    reuse_freed_memory()  # the same tensors are allocated every training step and every eval image
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=1200, help="B in the arm definitions (single run)")
    ap.add_argument("--budgets", default="", help="sweep mode: comma list of B, e.g. 1000,4000,16000; every arm of "
                    "every (budget, seed) trained and evaluated, then sweep.{json,md,png} written in --out")
    ap.add_argument("--seed", type=int, default=0, help="training seed (single run)")
    ap.add_argument("--seeds", default="0", help="sweep mode: comma list of training seeds")
    ap.add_argument("--scales", default="4,8", help="which arms: 4 (x4 direct, x2->x4) and/or 8 (x8 direct, x2->x4->x8)")
    ap.add_argument("--omega-max", type=_parse_omega, default=None, metavar="none|M",
                    help="eq. 2 weight clip; 'none' (default) is the paper's unclipped 1 + SNR. The 2026-11 results "
                         "used 5 (clips every t < 0.295)")
    ap.add_argument("--sets", default="set14")
    ap.add_argument("--limit", type=int, default=0, help="first N images per set (0 = all)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default docs/results/yonos, "
                    "docs/results/yonos_sweep in sweep mode)")
    ap.add_argument("--runs", type=Path, default=None, help="training runs (default runs/yonos_ablation, "
                    "runs/yonos_sweep in sweep mode)")
    ap.add_argument("--steps", default=None, help="DDIM steps to evaluate (default 1,2,4,8,16,32,64; sweep 1,2,4,8,16,64)")
    ap.add_argument("--fid-patches", type=int, default=None, help="patch FID from about N random crops per set "
                    "(TF-Inception, ~0.3 s a patch on 2 cores); default 1000 in sweep mode, 0 (off) otherwise")
    ap.add_argument("--fid-steps", default=None, help="DDIM step counts that get the patch FID (default: all; "
                    "sweep 1,4,16,64: TF-Inception takes ~0.4 s a patch on one core here, so each one costs ~7 min "
                    "per arm at 1000 patches)")
    ap.add_argument("--fid-patch-size", type=int, default=128, help="FID crop in HR pixels (YONOS: 512; Set14 "
                    "images are too small for that)")
    ap.add_argument("--latent-scaling", default="1.0",
                    help="multiply latents so the residual target has ~unit variance (its mean square is ~0.024 at 1.0 "
                         "for pixel-unshuffle, docs/results/terminal_mass.md); 'auto' measures 1/RMS of the x4 residual")
    ap.add_argument("--autoencoder", default=None, help="train every arm in this trained model's autoencoder "
                    "(e.g. runs/kl_ae_small/model from configs/kl_ae_small.json) instead of pixel-unshuffle")
    ap.add_argument("--crop-pool", type=int, default=0,
                    help="train every arm on a fixed pool of N crops (0: fresh random crops); with --autoencoder "
                         "the frozen encoder's latents of the pool are then computed once and cached in "
                         "RUNS/latent_cache (on a CPU the KL encoder costs more than the U-Net step)")
    ap.add_argument("--decoder-steps", type=int, default=0, help="Table 4: fine-tune each arm's decoder this many "
                    "steps (needs a KL --autoencoder); 0 = skip")
    ap.add_argument("--decoder-gan-weights", default=str(GAN_WEIGHT),
                    help="comma list of patch-GAN weights, one fine-tuned decoder per arm for each (0 = L1 + feature loss only)")
    ap.add_argument("--train-only", action="store_true", help="train (the --group's arms) and stop before evaluating")
    ap.add_argument("--headline-steps", default="", help="extra DDIM step counts for the direct arms only, e.g. 200")
    ap.add_argument("--group", choices=["direct", "chain"], default=None,
                    help="train and evaluate only these arms (run both groups in parallel, then once without)")
    args = ap.parse_args()
    if args.decoder_steps and not args.autoencoder:
        ap.error("--decoder-steps needs --autoencoder (a KL autoencoder: pixel-unshuffle has no decoder to tune)")
    sweep = bool(args.budgets)
    if sweep and args.decoder_steps:
        ap.error("--decoder-steps is for one budget: run Table 4 with --budget B --runs RUNS/B{B}_s{seed}")
    args.scales = sorted({int(v) for v in args.scales.split(",")})
    if not set(args.scales) <= {4, 8}:
        ap.error("--scales takes 4 and/or 8")
    args.sets = [v for v in args.sets.split(",") if v]
    args.out = args.out or (OUT.parent / "yonos_sweep" if sweep else OUT)
    args.runs = args.runs or (RUNS.parent / "yonos_sweep" if sweep else RUNS)
    STEPS = [int(v) for v in (args.steps or ",".join(map(str, SWEEP_STEPS if sweep else STEPS))).split(",")]
    if args.fid_patches is None:
        args.fid_patches = 1000 if sweep else 0
    fid_steps = args.fid_steps or ("1,4,16,64" if sweep else "")
    args.fid_steps = [int(v) for v in fid_steps.split(",") if v] or None
    scaling = configure(args)
    headline = [int(v) for v in args.headline_steps.split(",") if v]
    if sweep:
        run_sweep(args, scaling, headline)
    else:
        run_single(args, scaling, headline)




def run_single(args, scaling: float, headline: list[int]) -> None:
    """One budget, one seed: Fig. 3, and with --decoder-steps Table 4 and the headline."""
    from upstep.evaluate.report import provenance, write_json

    OUT = args.out
    gan_weights = [float(w) for w in args.decoder_gan_weights.split(",")]
    results = cell(args.budget, args.seed, args.runs, OUT, args, train_only=args.train_only, extra_direct=headline,
                   decoder_steps=args.decoder_steps, gan_weights=gan_weights)
    if args.group or args.train_only:
        return
    sets = args.sets
    tuned = {a: r["model"] for a, r in results.items() if "+" in a}
    base = next(a for a in results if "+" not in a)  # every arm shares the frozen autoencoder
    recon = (decoder_reconstruction({"autoencoder (original decoder)": Path(results[base]["model"]),
                                     **{a: Path(f) for a, f in tuned.items()}}, sets, args.limit) if tuned else {})
    claims = table4_claims(OUT, results, sets, gan_weights, max(headline, default=0)) if tuned else {}
    summary = {"budget_B": args.budget, "seed": args.seed, "weighting": weighting(args.omega_max),
               "latent_scaling": scaling, "autoencoder": args.autoencoder,
               "decoder_steps": args.decoder_steps, "decoder_gan_weights": gan_weights if tuned else [],
               "headline_steps": headline, "fid_patches": args.fid_patches,
               "decoder_reconstruction": recon, "table4_claims": claims,
               "arms": {a: {"scale": r["scale"], "steps": r["steps"], "sets": r["sets"], "fid": r.get("fid")}
                        for a, r in results.items()},
               "steps": STEPS, "config_base": BASE, **provenance()}
    write_json(OUT / "results.json", summary)
    print(write_single(OUT, summary))


# ---- sweep mode: budgets x seeds, quality vs DDIM steps, claims per budget ---------------------
def run_sweep(args, scaling: float, headline: list[int]) -> None:
    from upstep.evaluate.report import provenance, write_json

    budgets = [int(v) for v in args.budgets.split(",") if v]
    seeds = [int(v) for v in args.seeds.split(",") if v]
    cells = {}
    for b in budgets:
        for sd in seeds:
            name = f"B{b}_s{sd}"
            print(f"== {name}", flush=True)
            res = cell(b, sd, args.runs / name, args.out / name, args, train_only=args.train_only, extra_direct=headline)
            cells[name] = {"budget": b, "seed": sd, "arms": {a: {"scale": r["scale"], "steps": r["steps"],
                                                                  "sets": r["sets"], "fid": r.get("fid")}
                                                             for a, r in res.items()}}
    if args.group or args.train_only:
        return
    # fold in cells written by earlier invocations (other budgets / seeds), so the report covers them all
    sweep_path = args.out / "sweep.json"
    evaluated_now = sorted(cells)
    if sweep_path.is_file():
        for k, v in json.loads(sweep_path.read_text()).get("cells", {}).items():
            cells.setdefault(k, v)
    summary = summarise_sweep(cells, args.sets)
    report = {"weighting": weighting(args.omega_max), "latent_scaling": scaling, "autoencoder": args.autoencoder,
              "steps": STEPS, "fid_patches_requested": args.fid_patches, "fid_patch_px": args.fid_patch_size,
              "config_base": {k: v for k, v in BASE.items() if k != "seed"}, "summary": summary,
              "claims": sweep_claims(summary, args.sets, args.out), "cells": cells, "cells_evaluated_now": evaluated_now,
              **provenance()}
    write_json(sweep_path, report)
    print(write_sweep(args.out, report))



if __name__ == "__main__":
    main()
