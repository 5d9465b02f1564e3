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
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from upstep.evaluate.ablation import (Arm, claim_text, compare, difference_of, fmt_diff, fmt_mean_range, mean_and_range,
                                     noise_note, paired_claim, paired_claim_text, per_image, run_arms, train_run)
from upstep.evaluate.report import md_table

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


GAN_WEIGHT = 0.5  # the latent-diffusion autoencoder's disc_weight, the paper's decoder loss


def _gan_suffix(disc_weight: float) -> str:
    return "" if disc_weight == GAN_WEIGHT else f"_gan{disc_weight:g}"


def ft_name(arm: str, disc_weight: float) -> str:
    """Arm name of ``arm`` with its decoder fine-tuned at GAN weight ``disc_weight``."""
    return f"{arm}+ft_decoder{_gan_suffix(disc_weight)}"


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


def weighting(omega_max: float | None) -> dict:
    """The eq. 2 weighting actually used, for the results' metadata."""
    from upstep.diffusion.schedule import omega_clip_time

    t = omega_clip_time(omega_max)
    text = ("omega = 1 + SNR (YONOS eq. 2), unclipped" if omega_max is None else
            f"omega = 1 + SNR clipped at {omega_max:g}: every t < {t:.3g} ({100 * t:.1f} % of uniform training t) "
            f"weighted {omega_max:g} instead of 1 / sin^2(pi t / 2)")
    return {"omega_max": omega_max, "clipped_below_t": t, "text": text}


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
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
    from upstep.evaluate.report import provenance, provenance_md, write_json

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
               "decoder_steps": args.decoder_steps, "decoder_reconstruction": recon, "table4_claims": claims,
               "arms": {a: {"scale": r["scale"], "steps": r["steps"], "sets": r["sets"], "fid": r.get("fid")}
                        for a, r in results.items()},
               "steps": STEPS, "config_base": BASE, **provenance()}
    write_json(OUT / "results.json", summary)
    latent = (f"the KL autoencoder of `{args.autoencoder}`" if args.autoencoder else "the pixel-unshuffle x4 latent")
    lines = ["# YONOS-SR at small scale: direct vs scale-distilled", "", provenance_md(summary), "",
             f"Latent: {latent}, scaling {scaling:.4g}. B = {args.budget} optimiser steps; x4 arms trained 2B steps in "
             "total, x8 arms 3B (see the benchmark's docstring). U-Net [32, 64, 64], batch 8, 128-px crops, uniform t, "
             f"seed {args.seed}. Weighting: {summary['weighting']['text']}. PSNR/SSIM on "
             "Y with `scale` px cropped; LPIPS-alex. Bicubic measured in the same run.", ""]
    if args.crop_pool:
        lines += [f"Training crops: one fixed pool of {args.crop_pool} random 128-px crops (with flips/rotations) of the "
                  "training images, shared by every arm" + (", so the frozen encoder's latent of each crop is computed "
                  "once and cached" if args.autoencoder else "") + ".", ""]
    if tuned:
        lines += table4(results, sets, args.decoder_steps, gan_weights)
        lines += table4_claims_md(claims)
        rows = [[name, *(recon[name][s][m] for s in sets for m in ("psnr", "lpips"))] for name in recon]
        lines += ["Control: plain reconstruction, decode(encode(HR)), with each decoder (no U-Net). "
                  "It bounds, roughly, what a model in this latent can reach; a fine-tuned decoder that improves it "
                  "gained from more decoder training in general, not only from adapting to one-step latents.", "",
                  md_table(["decoder", *(f"{s} {m}" for s in sets for m in ("PSNR-Y ↑", "LPIPS ↓"))], rows), ""]
    if headline:
        lines += headline_table(results, sets, max(headline))
    lines += ["## Fig. 3: quality vs DDIM steps", ""]
    for s in sets:
        for scale in args.scales:
            arms = [a for a in results if results[a]["scale"] == scale and "+" not in a]
            cols = ["psnr", "ssim", "lpips"] + (["fid"] if args.fid_patches else [])
            rows = []
            for a in arms:
                m = results[a]["sets"][s]["methods"]
                rows += [[a, n, *(m[f"model@{n}"].get(c, float("nan")) for c in cols)] for n in results[a]["steps"]]
            bic = results[arms[0]]["sets"][s]["methods"]["bicubic"]
            rows.append(["bicubic", "-", *(bic.get(c, float("nan")) for c in cols)])
            names = ["PSNR-Y ↑", "SSIM-Y ↑", "LPIPS ↓"] + [f"{_fid_label(results[arms[0]], s)} ↓"] * bool(args.fid_patches)
            lines += [f"## {s}, x{scale}", "", md_table(["arm", "steps", *names], rows), ""]
    (OUT / "results.md").write_text("\n".join(lines))
    _plot(results, sets, OUT)
    print("\n".join(lines))


def _fid_label(result: dict, s: str) -> str:
    return ((result.get("fid") or {}).get(s) or {}).get("label", "FID")


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
              "claims": sweep_claims(summary, args.sets), "cells": cells, "cells_evaluated_now": evaluated_now,
              **provenance()}
    write_json(sweep_path, report)
    text = sweep_markdown(report, args.sets, scaling, args.autoencoder)
    (args.out / "sweep.md").write_text(text)
    plot_sweep(summary, args.sets, args.out / "sweep.png")
    print(text)


METRICS = ("psnr", "lpips", "fid")


def summarise_sweep(cells: dict, sets: list[str]) -> dict:
    """{set: {arm: {budget: {"seeds": [...], "steps": {n: {metric: mean_and_range}}, "bicubic": ...}}}}."""
    out: dict = {}
    for s in sets:
        per: dict = {}
        for c in cells.values():
            for arm, r in c["arms"].items():
                if s not in r["sets"]:
                    continue
                m = r["sets"][s]["methods"]
                d = per.setdefault(arm, {}).setdefault(str(c["budget"]), {"scale": r["scale"], "seeds": [], "raw": {}})
                d["seeds"].append(c["seed"])
                d["fid_label"] = _fid_label(r, s)
                for n in r["steps"]:
                    for k in METRICS:
                        d["raw"].setdefault(str(n), {}).setdefault(k, []).append(m[f"model@{n}"].get(k, float("nan")))
                for k in METRICS:
                    d["raw"].setdefault("bicubic", {}).setdefault(k, []).append(m["bicubic"].get(k, float("nan")))
        for arm, by_b in per.items():
            for d in by_b.values():
                d["steps"] = {n: {k: mean_and_range(v) for k, v in ms.items()} for n, ms in d.pop("raw").items()}
        out[s] = per
    return out


def sweep_claims(summary: dict, sets: list[str]) -> dict:
    """Per set, scale and budget: (a) distilled vs direct at 1 step (difference of the seed means;
    "within noise" when the two arms' seed ranges overlap), (b) whether the direct model improves
    in LPIPS with more steps, and at which step count it is best."""
    from upstep.metrics import HIGHER_IS_BETTER

    out: dict = {}
    for s in sets:
        for scale in (4, 8):
            direct, dist = summary[s].get(f"direct_x{scale}", {}), summary[s].get(f"distilled_x{scale}", {})
            for b in sorted(set(direct) & set(dist), key=int):
                one_d, one_s = direct[b]["steps"]["1"], dist[b]["steps"]["1"]
                comp = {k: compare(one_d[k], one_s[k], HIGHER_IS_BETTER[k])
                        for k in METRICS if one_d[k]["n"] and one_s[k]["n"]}
                lp = {int(n): v["lpips"]["mean"] for n, v in direct[b]["steps"].items() if n != "bicubic"}
                best = min(lp, key=lambda n: lp[n]) if lp else None
                # the direct model's best step count against its own 1 step, judged against the seed range
                more = (compare(one_d["lpips"], direct[b]["steps"][str(best)]["lpips"], HIGHER_IS_BETTER["lpips"])
                        if best is not None and best > 1 else None)
                out.setdefault(s, {}).setdefault(f"x{scale}", {})[b] = {
                    "distilled_beats_direct_at_1_step": comp,
                    "direct_improves_in_lpips_with_steps": bool(more and more["better"]),
                    "direct_best_lpips_steps": best, "direct_best_vs_1_step_lpips": more}
    return out


def sweep_markdown(report: dict, sets: list[str], scaling: float, autoencoder) -> str:
    from upstep.evaluate.report import provenance_md

    latent = f"the KL autoencoder of `{autoencoder}`" if autoencoder else "the pixel-unshuffle x4 latent"
    lines = ["# YONOS-SR budget sweep: direct vs scale-distilled, quality vs DDIM steps", "", provenance_md(report), "",
             f"Latent: {latent}, scaling {scaling:.4g}. Weighting: {report['weighting']['text']}. x4 arms: 2B optimiser "
             "steps in total (direct x4, or x2 B + distilled x4 B); x8 arms: 3B (see the benchmark's docstring). "
             "Cells: mean over training seeds, with the (min–max) range when there are several. PSNR-Y falls with "
             "more DDIM steps even for a perfect sampler (a posterior sample has about twice the MSE of the "
             "posterior mean a one-step model predicts, about -3 dB): judge steps by LPIPS and FID.", ""]
    folded = sorted(set(report.get("cells", {})) - set(report.get("cells_evaluated_now", report.get("cells", {}))))
    if folded:
        lines += [f"Cells evaluated by this command: {', '.join(report['cells_evaluated_now'])}; folded in from earlier "
                  f"runs of this benchmark: {', '.join(folded)} (each arm's `results.md` in `<cell>/<arm>/` gives "
                  "its own command and date).", ""]
    names = {"psnr": "PSNR-Y ↑", "lpips": "LPIPS ↓", "fid": "FID ↓"}
    for s in sets:
        per = report["summary"][s]
        for scale in (4, 8):
            arms = [a for a in per if next(iter(per[a].values()))["scale"] == scale]
            if not arms:
                continue
            steps = sorted({int(n) for a in arms for d in per[a].values() for n in d["steps"] if n != "bicubic"})
            for k in METRICS:
                rows = []
                for a in arms:
                    for b in sorted(per[a], key=int):
                        d = per[a][b]
                        rows.append([a, b, len(d["seeds"]), *(fmt_mean_range(d["steps"][str(n)][k]) if str(n) in d["steps"]
                                                             else "" for n in steps)])
                bic = per[arms[0]][sorted(per[arms[0]], key=int)[0]]["steps"]["bicubic"][k]
                if not bic["n"] and not any(r[3:] != ["n/a"] * len(steps) for r in rows):
                    continue
                label = names[k] if k != "fid" else f"{per[arms[0]][sorted(per[arms[0]], key=int)[0]]['fid_label']} ↓"
                lines += [f"## {s}, x{scale}: {label} vs DDIM steps (bicubic {fmt_mean_range(bic)})", "",
                          md_table(["arm", "budget B", "seeds", *(f"{n} step{'s' * (n > 1)}" for n in steps)], rows), ""]
    lines += ["## Claims per budget", ""]
    for s in sets:
        for sc, by_b in report["claims"].get(s, {}).items():
            rows = []
            for b, c in by_b.items():
                comp = c["distilled_beats_direct_at_1_step"]
                cells_ = [claim_text(comp[k]) if k in comp else "n/a" for k in METRICS]
                more = c.get("direct_best_vs_1_step_lpips")
                rows.append([b, *cells_, f"yes: {claim_text(more)}" if c["direct_improves_in_lpips_with_steps"] else "no",
                             c["direct_best_lpips_steps"]])
            lines += [f"### {s}, {sc}", "", "Distilled beats direct at 1 step (distilled − direct; PSNR higher, "
                      "LPIPS/FID lower is better); the standard (direct) model improves in LPIPS with more DDIM steps "
                      "(its best step count − its 1 step).", "",
                      md_table(["budget B", "PSNR-Y", "LPIPS", "FID", "direct improves with steps", "direct's best LPIPS at"],
                               rows), ""]
            first = next((b for b, c in by_b.items() if c["direct_improves_in_lpips_with_steps"]), None)
            gain = by_b[first]["direct_best_vs_1_step_lpips"] if first else None
            lines += [f"The standard (direct) model first improves in LPIPS with more DDIM steps at B={first} "
                      f"({fmt_diff(gain['diff'])}, {noise_note(gain)})." if first
                      else f"The standard (direct) model does not improve in LPIPS with more DDIM steps at any budget "
                           f"up to B={list(by_b)[-1]}.", ""]
            gaps = [(b, c["distilled_beats_direct_at_1_step"]["lpips"]["diff"])
                    for b, c in by_b.items() if "lpips" in c["distilled_beats_direct_at_1_step"]]
            if len(gaps) > 1:  # issue 11: does distillation's 1-step advantage grow or shrink with budget?
                trend = "grows" if -gaps[-1][1] > -gaps[0][1] else "shrinks"
                grew = [-g1 > -g0 for (_, g0), (_, g1) in zip(gaps, gaps[1:])]  # per consecutive budget pair
                monotone = all(grew) or not any(grew)
                lines += ["1-step LPIPS advantage of distillation (direct − distilled) by budget: "
                          + ", ".join(f"B={b}: {fmt_diff(-g)}" for b, g in gaps)
                          + f"; from the smallest to the largest budget it {trend}"
                          + ("." if monotone else ", but not at every budget step."), ""]
    return "\n".join(lines)


def plot_sweep(summary: dict, sets: list[str], path: Path) -> None:
    """LPIPS and FID vs DDIM steps: one line per arm and budget (seed mean, range as error bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, sc, k) for s in sets for sc in (4, 8) for k in ("lpips", "fid")
              if any(d["scale"] == sc and any(n != "bicubic" and v[k]["n"] for n, v in d["steps"].items())
                     for by_b in summary[s].values() for d in by_b.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (s, sc, k) in zip(axes[0], panels):
        budgets = sorted({b for d in summary[s].values() for b in d}, key=int)
        for a, by_b in summary[s].items():
            for b, d in by_b.items():
                if d["scale"] != sc:
                    continue
                ns = sorted(int(n) for n in d["steps"] if n != "bicubic" and d["steps"][n][k]["n"])
                if not ns:
                    continue
                r = [d["steps"][str(n)][k] for n in ns]
                mean = [x["mean"] for x in r]
                err = [[x["mean"] - x["min"] for x in r], [x["max"] - x["mean"] for x in r]]
                shade = 0.35 + 0.65 * (budgets.index(b) + 1) / len(budgets)
                color = (0.1, 0.3, shade) if a.startswith("direct") else (shade, 0.35, 0.1)
                ax.errorbar(ns, mean, yerr=err, marker="o" if a.startswith("direct") else "s", ms=3, capsize=2,
                            color=color, label=f"{a} B={b}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("DDIM steps")
        ax.set_title(f"{s} x{sc}: {'LPIPS' if k == 'lpips' else 'FID'} ↓", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cols(results: dict) -> list[str]:
    return ["psnr", "ssim", "lpips"] + (["fid"] if any(r.get("fid") for r in results.values()) else [])


def _header(results: dict, s: str) -> list[str]:
    names = {"psnr": "PSNR-Y ↑", "ssim": "SSIM-Y ↑", "lpips": "LPIPS ↓"}
    return [names.get(c) or f"{_fid_label(next(iter(results.values())), s)} ↓" for c in _cols(results)]


def _cell(results: dict, arm: str, s: str, steps: int = 1, method: str | None = None) -> list:
    m = results[arm]["sets"][s]["methods"][method or f"model@{steps}"]
    return [m.get(c, float("nan")) for c in _cols(results)]


def table4(results: dict, sets: list[str], decoder_steps: int, gan_weights: list[float]) -> list[str]:
    """YONOS Table 4: {original, fine-tuned decoder} x {no distillation, scale distillation}, 1 step."""
    lines = ["## Table 4: decoder fine-tuning x scale distillation (1 DDIM step)", "",
             f"Fine-tuned decoder: {decoder_steps} steps of `decoder_finetune` (L1 + EfficientNet-Lite0 feature loss (not LPIPS-alex, the metric) + GAN weight x patch-GAN "
             "loss with the adaptive weight of VQGAN eq. 7; 0.5 is the latent-diffusion autoencoder's) on each arm's own "
             "one-step latents, U-Net and encoder frozen.", ""]
    for s in sets:
        rows = []
        for scale in sorted({r["scale"] for r in results.values()}):
            for dist, arm in (("no", f"direct_x{scale}"), ("yes", f"distilled_x{scale}")):
                rows.append([f"x{scale}", dist, "original", *_cell(results, arm, s)])
                for w in gan_weights:
                    rows.append([f"x{scale}", dist, f"fine-tuned, GAN weight {w:g}", *_cell(results, ft_name(arm, w), s)])
            rows.append([f"x{scale}", "bicubic", "-", *_cell(results, f"direct_x{scale}", s, method="bicubic")])
        lines += [f"### {s}", "", md_table(["scale", "distillation", "decoder", *_header(results, s)], rows), ""]
    return lines


def table4_claims(out: Path, results: dict, sets: list[str], gan_weights: list[float], many: int = 0) -> dict:
    """The design's Table 4 claims at 1 step (and with ``many`` the headline: 1-step distilled +
    fine-tuned decoder vs the direct model at ``many`` steps), per set and scale, each a
    ``paired_claim`` (b − a with its standard error over the test images: one seed, so the images
    are the only noise measured here): {set: {"x4": [{"claim", "metric", "diff", "se", "n", "held",
    "beyond_2se", "text"}]}}."""
    claims: dict = {}
    for s in sets:
        for scale in sorted({r["scale"] for r in results.values()}):
            direct, dist = f"direct_x{scale}", f"distilled_x{scale}"
            rows = []
            for metric, higher in (("psnr", True), ("lpips", False)):   # the claimed direction of b − a

                def v(arm: str, steps: int = 1) -> dict[str, float]:
                    return per_image(out / arm, s, f"model@{steps}", metric)

                pairs = [("at 1 step, distilled beats direct", v(direct), v(dist))]
                for w in gan_weights:
                    ft_direct, ft_dist = v(ft_name(direct, w)), v(ft_name(dist, w))
                    pairs += [(f"fine-tuning the decoder (GAN weight {w:g}) helps {direct}", v(direct), ft_direct),
                              (f"fine-tuning the decoder (GAN weight {w:g}) helps {dist}", v(dist), ft_dist),
                              (f"... (GAN weight {w:g}) helps distilled more than direct",
                               difference_of(v(direct), ft_direct), difference_of(v(dist), ft_dist)),
                              (f"distilled + fine-tuned decoder (GAN weight {w:g}) beats direct + fine-tuned decoder",
                               ft_direct, ft_dist)]
                    if many:
                        pairs.append((f"distilled + fine-tuned decoder (GAN weight {w:g}), 1 step, beats direct at "
                                      f"{many} steps", v(direct, many), ft_dist))
                for claim, a, b in pairs:
                    c = paired_claim(a, b, higher)
                    rows.append({"claim": claim, "metric": metric, **c, "text": paired_claim_text(c)})
            claims.setdefault(s, {})[f"x{scale}"] = rows
    return claims


def table4_claims_md(claims: dict) -> list[str]:
    lines = ["### Table 4 claims", "",
             "Each claim as the mean per-image difference over the set (PSNR-Y in dB; LPIPS, lower is better) "
             "± its standard error over the images. One seed: \"within 2 SE\" means the difference is not "
             "distinguishable from the choice of test images; seed-to-seed noise is not measured here and adds to it.",
             ""]
    for s, per_scale in claims.items():
        for scale, rows in per_scale.items():
            by_claim: dict = {}
            for r in rows:
                by_claim.setdefault(r["claim"], {})[r["metric"]] = r["text"]
            lines += [f"#### {s}, {scale}", "",
                      md_table(["claim", "PSNR-Y", "LPIPS"], [[c, m["psnr"], m["lpips"]] for c, m in by_claim.items()]),
                      ""]
    return lines


def headline_table(results: dict, sets: list[str], many: int) -> list[str]:
    """The headline: 1-step distilled + fine-tuned decoder vs the standard model at ``many`` steps."""
    lines = [f"## Headline: 1 step (distilled + fine-tuned decoder) vs the standard model at {many} steps", ""]
    for s in sets:
        rows = []
        for scale in sorted({r["scale"] for r in results.values()}):
            for arm in [a for a in results if a.startswith(f"distilled_x{scale}")]:
                rows.append([f"x{scale}", arm, 1, *_cell(results, arm, s)])
            for n in (1, many):
                rows.append([f"x{scale}", f"direct_x{scale}", n, *_cell(results, f"direct_x{scale}", s, n)])
        lines += [f"### {s}", "", md_table(["scale", "model", "steps", *_header(results, s)], rows), ""]
    return lines


def _plot(results: dict, sets: list[str], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({r["scale"] for r in results.values()})
    fig, axes = plt.subplots(len(sets), 2 * len(scales), figsize=(3.3 * 2 * len(scales), 3.2 * len(sets)), squeeze=False)
    for i, s in enumerate(sets):
        for j, (scale, metric) in enumerate([(sc, m) for sc in scales for m in ("psnr", "lpips")]):
            ax = axes[i][j]
            for a, r in results.items():
                if r["scale"] == scale:
                    m = r["sets"][s]["methods"]
                    if "+" in a:   # fine-tuned decoder: 1 step only
                        ax.plot([1], [m["model@1"][metric]], "*", ms=10, label=a)
                    else:
                        ax.plot(r["steps"], [m[f"model@{n}"][metric] for n in r["steps"]], "o-", label=a)
                    bic = m["bicubic"][metric]
            ax.axhline(bic, ls="--", color="gray", label="bicubic")
            ax.set_xscale("log", base=2), ax.set_xlabel("DDIM steps"), ax.set_title(f"{s} x{scale} {metric}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig3.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
