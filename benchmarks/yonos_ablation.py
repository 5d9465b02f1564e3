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

Training runs live in ``--runs`` and resume; evaluation records resume too. ``--group direct``
and ``--group chain`` train and evaluate one half each (run both at once on 2 cores, then once
without ``--group`` to write the report). Writes ``{results.json,results.md,fig3.png}`` in ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from upstep.evaluate.report import md_table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "yonos"
RUNS = ROOT / "runs" / "yonos_ablation"
STEPS = [1, 2, 4, 8, 16, 32, 64]

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


def _trained(run: Path) -> bool:
    return (run / "model" / "model.safetensors").is_file()


def train_arms(budget: int, groups: set[str]) -> dict[str, Path]:
    from upstep.recipes.scale_distill import run_chain
    from upstep.train.loop import train

    b = budget
    models = {}
    for name, scale, steps in (("direct_x4", 4, 2 * b), ("direct_x8", 8, 3 * b)):
        run = RUNS / name
        if "direct" in groups and not _trained(run):
            train(stage(name, scale, steps), run, progress=False)
        models[name] = run / "model"
    if "chain" in groups:
        chain = [stage("x2", 2, b), stage("distilled_x4", 4, b, "scale_distill"),
                 stage("distilled_x8", 8, b, "scale_distill")]
        run_chain(chain, RUNS / "chain")
    models["distilled_x4"] = RUNS / "chain" / "stage1_distilled_x4" / "model"
    models["distilled_x8"] = RUNS / "chain" / "stage2_distilled_x8" / "model"
    return models


GAN_WEIGHT = 0.5  # the latent-diffusion autoencoder's disc_weight, the paper's decoder loss


def _gan_suffix(disc_weight: float) -> str:
    return "" if disc_weight == GAN_WEIGHT else f"_gan{disc_weight:g}"


def ft_name(arm: str, disc_weight: float) -> str:
    """Arm name of ``arm`` with its decoder fine-tuned at GAN weight ``disc_weight``."""
    return f"{arm}+ft_decoder{_gan_suffix(disc_weight)}"


def decoder_finetune_arms(models: dict[str, Path], steps: int, groups: set[str],
                          disc_weights: list[float]) -> dict[str, Path]:
    """Table 4's fine-tuned-decoder cells: each arm's own decoder fine-tuned on its 1-step latents,
    once per GAN weight (0.5 = the paper's loss; 0 = L1 + LPIPS only)."""
    from upstep.train.loop import train

    tuned = {}
    for arm, folder in models.items():
        for w in disc_weights:
            name = ft_name(arm, w)
            run = RUNS / f"{arm}_decoder_ft{_gan_suffix(w)}"
            cfg = {"name": name, "recipe": "decoder_finetune", "seed": 0, "init_from": str(folder),
                   "data": {**BASE["data"], "scale": int(arm[-1])},
                   "decoder_finetune": {"lpips_weight": 1.0, "disc_weight": w, "disc_start": 0,
                                        "disc": {"channels": 32, "n_layers": 3, "norm": "batch"}},
                   "train": {"steps": steps, "batch": BASE["train"]["batch"], "lr": 1e-4, "warmup": 0,
                             "mixed_precision": "bf16", "checkpoint_every": 100, "val_every": 100000,
                             "log_every": 50, "grad_clip": 1.0}}
            if _group(arm) in groups and not _trained(run):
                train(cfg, run, progress=False)
            tuned[name] = run / "model"
    return tuned


def decoder_reconstruction(folders: dict[str, Path], sets: list[str]) -> dict[str, dict[str, float]]:
    """Control for Table 4: PSNR-Y of decode(encode(HR)) with each model's decoder. A fine-tuned
    decoder that also reconstructs real HR latents much better gained from extra decoder training
    in general, not (only) from adapting to the U-Net's one-step latents."""
    import torch

    from upstep.evaluate.sets import open_set
    from upstep.metrics import psnr, quantize
    from upstep.model import load_model

    out: dict[str, dict[str, float]] = {}
    for name, folder in folders.items():
        ae = load_model(folder).autoencoder.eval()
        out[name] = {}
        for s in sets:
            bset, vals = open_set(s), []
            for item in bset.items:
                _, hr = bset.load(item, ae.factor)
                with torch.no_grad():
                    rec = (ae.decode(ae.encode(hr * 2 - 1)).clamp(-1, 1) + 1) / 2
                vals.append(float(psnr(quantize(rec), hr, crop_border=4)))
            out[name][s] = sum(vals) / len(vals)
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


def main() -> None:
    global OUT, RUNS, STEPS
    from upstep.evaluate.report import provenance, provenance_md, write_json
    from upstep.evaluate.runner import evaluate

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=1200, help="B in the arm definitions")
    ap.add_argument("--sets", default="set14")
    ap.add_argument("--limit", type=int, default=0, help="first N images per set (0 = all)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--steps", default=",".join(map(str, STEPS)), help="DDIM steps to evaluate")
    ap.add_argument("--latent-scaling", default="1.0",
                    help="multiply latents so the residual target has ~unit variance (its mean square is ~0.024 at 1.0 "
                         "for pixel-unshuffle, docs/results/terminal_mass.md); 'auto' measures 1/RMS of the x4 residual")
    ap.add_argument("--autoencoder", default=None, help="train every arm in this trained model's autoencoder "
                    "(e.g. runs/kl_ae_small/model from configs/kl_ae_small.json) instead of pixel-unshuffle")
    ap.add_argument("--decoder-steps", type=int, default=0, help="Table 4: fine-tune each arm's decoder this many "
                    "steps (needs a KL --autoencoder); 0 = skip")
    ap.add_argument("--decoder-gan-weights", default=str(GAN_WEIGHT),
                    help="comma list of patch-GAN weights, one fine-tuned decoder per arm for each (0 = L1 + LPIPS only)")
    ap.add_argument("--train-only", action="store_true", help="train (the --group's arms) and stop before evaluating")
    ap.add_argument("--headline-steps", default="", help="extra DDIM step counts for the direct arms only, e.g. 200")
    ap.add_argument("--group", choices=["direct", "chain"], default=None,
                    help="train and evaluate only these arms (run both groups in parallel, then once without)")
    args = ap.parse_args()
    if args.decoder_steps and not args.autoencoder:
        ap.error("--decoder-steps needs --autoencoder (a KL autoencoder: pixel-unshuffle has no decoder to tune)")
    if args.autoencoder:
        scaling = residual_scaling(args.autoencoder) if args.latent_scaling == "auto" else float(args.latent_scaling)
        from upstep.model import load_model
        BASE["model"]["autoencoder"] = {"from": args.autoencoder, "scaling": round(scaling, 4)}
        BASE["model"]["unet"]["latent_channels"] = load_model(args.autoencoder).autoencoder.latent_channels
    else:
        scaling = 1.0 if args.latent_scaling == "auto" else float(args.latent_scaling)
        BASE["model"]["autoencoder"]["scaling"] = scaling
    OUT, RUNS, STEPS = args.out, args.runs, [int(v) for v in args.steps.split(",")]
    headline = [int(v) for v in args.headline_steps.split(",") if v]
    groups = {args.group} if args.group else {"direct", "chain"}
    models = train_arms(args.budget, groups)
    gan_weights = [float(w) for w in args.decoder_gan_weights.split(",")]
    tuned = decoder_finetune_arms(models, args.decoder_steps, groups, gan_weights) if args.decoder_steps else {}
    if args.train_only:
        return
    sets = args.sets.split(",")
    results = {}
    plan = [(a, f, STEPS + (headline if a.startswith("direct") else [])) for a, f in models.items()]
    plan += [(a, f, [1]) for a, f in tuned.items()]
    for arm, folder, steps in plan:
        if _group(arm) not in groups:
            continue
        results[arm] = evaluate(str(folder), sets, steps, OUT / arm, peers="none", limit=args.limit,
                                metrics=["psnr", "ssim", "lpips"], progress=False, command=["(yonos_ablation)"])
        results[arm]["steps"] = steps
    if args.group:
        return
    recon = decoder_reconstruction({"autoencoder (original decoder)": models["direct_x4"], **tuned}, sets) if tuned else {}
    summary = {"budget_B": args.budget, "latent_scaling": scaling, "autoencoder": args.autoencoder,
               "decoder_steps": args.decoder_steps, "decoder_reconstruction_psnr_y": recon,
               "arms": {a: {"scale": r["scale"], "steps": r["steps"], "sets": r["sets"]} for a, r in results.items()},
               "steps": STEPS, "config_base": BASE, **provenance()}
    write_json(OUT / "results.json", summary)
    latent = (f"the KL autoencoder of `{args.autoencoder}`" if args.autoencoder else "the pixel-unshuffle x4 latent")
    lines = ["# YONOS-SR at small scale: direct vs scale-distilled", "", provenance_md(summary), "",
             f"Latent: {latent}, scaling {scaling:.4g}. B = {args.budget} optimiser steps; x4 arms trained 2B steps in total, x8 arms 3B (see the "
             "benchmark's docstring). U-Net [32, 64, 64], batch 8, 128-px crops, uniform t. PSNR/SSIM on "
             "Y with `scale` px cropped; LPIPS-alex. Bicubic measured in the same run.", ""]
    if tuned:
        lines += table4(results, sets, args.decoder_steps, gan_weights)
        rows = [[name, *(recon[name][s] for s in sets)] for name in recon]
        lines += ["Control: PSNR-Y of plain reconstruction, decode(encode(HR)), with each decoder (no U-Net). "
                  "It bounds, roughly, what a model in this latent can reach; a fine-tuned decoder that raises it "
                  "gained from more decoder training in general, not only from adapting to one-step latents.", "",
                  md_table(["decoder", *(f"{s} PSNR-Y" for s in sets)], rows), ""]
    if headline:
        lines += headline_table(results, sets, max(headline))
    lines += ["## Fig. 3: quality vs DDIM steps", ""]
    for s in sets:
        for scale in (4, 8):
            arms = [a for a in results if results[a]["scale"] == scale and "+" not in a]
            rows = []
            for a in arms:
                m = results[a]["sets"][s]["methods"]
                rows += [[a, n, m[f"model@{n}"]["psnr"], m[f"model@{n}"]["ssim"], m[f"model@{n}"]["lpips"]]
                         for n in results[a]["steps"]]
            bic = results[arms[0]]["sets"][s]["methods"]["bicubic"]
            rows.append(["bicubic", "-", bic["psnr"], bic["ssim"], bic["lpips"]])
            lines += [f"## {s}, x{scale}", "", md_table(["arm", "steps", "PSNR-Y ↑", "SSIM-Y ↑", "LPIPS ↓"], rows), ""]
    (OUT / "results.md").write_text("\n".join(lines))
    _plot(results, sets)
    print("\n".join(lines))


def _cell(results: dict, arm: str, s: str, steps: int = 1) -> list:
    m = results[arm]["sets"][s]["methods"][f"model@{steps}"]
    return [m["psnr"], m["ssim"], m["lpips"]]


def table4(results: dict, sets: list[str], decoder_steps: int, gan_weights: list[float]) -> list[str]:
    """YONOS Table 4: {original, fine-tuned decoder} x {no distillation, scale distillation}, 1 step."""
    lines = ["## Table 4: decoder fine-tuning x scale distillation (1 DDIM step)", "",
             f"Fine-tuned decoder: {decoder_steps} steps of `decoder_finetune` (L1 + LPIPS + GAN weight x patch-GAN "
             "loss with the adaptive weight of VQGAN eq. 7; 0.5 is the latent-diffusion autoencoder's) on each arm's own "
             "one-step latents, U-Net and encoder frozen.", ""]
    for s in sets:
        rows = []
        for scale in (4, 8):
            for dist, arm in (("no", f"direct_x{scale}"), ("yes", f"distilled_x{scale}")):
                rows.append([f"x{scale}", dist, "original", *_cell(results, arm, s)])
                for w in gan_weights:
                    rows.append([f"x{scale}", dist, f"fine-tuned, GAN weight {w:g}", *_cell(results, ft_name(arm, w), s)])
            bic = results[f"direct_x{scale}"]["sets"][s]["methods"]["bicubic"]
            rows.append([f"x{scale}", "bicubic", "-", bic["psnr"], bic["ssim"], bic["lpips"]])
        lines += [f"### {s}", "", md_table(["scale", "distillation", "decoder", "PSNR-Y ↑", "SSIM-Y ↑", "LPIPS ↓"], rows), ""]
    return lines


def headline_table(results: dict, sets: list[str], many: int) -> list[str]:
    """The headline: 1-step distilled + fine-tuned decoder vs the standard model at ``many`` steps."""
    lines = [f"## Headline: 1 step (distilled + fine-tuned decoder) vs the standard model at {many} steps", ""]
    for s in sets:
        rows = []
        for scale in (4, 8):
            for arm in [a for a in results if a.startswith(f"distilled_x{scale}")]:
                rows.append([f"x{scale}", arm, 1, *_cell(results, arm, s)])
            for n in (1, many):
                rows.append([f"x{scale}", f"direct_x{scale}", n, *_cell(results, f"direct_x{scale}", s, n)])
        lines += [f"### {s}", "", md_table(["scale", "model", "steps", "PSNR-Y ↑", "SSIM-Y ↑", "LPIPS ↓"], rows), ""]
    return lines


def _plot(results: dict, sets: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(sets), 4, figsize=(13, 3.2 * len(sets)), squeeze=False)
    for i, s in enumerate(sets):
        for j, (scale, metric) in enumerate([(4, "psnr"), (4, "lpips"), (8, "psnr"), (8, "lpips")]):
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
    fig.savefig(OUT / "fig3.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
