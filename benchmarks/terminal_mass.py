"""How much training mass at t = 1 does a ONE-step model need? (standard recipe, eq. 2)

Same small U-Net, same data, same steps, same seed; only ``p_terminal`` (the probability that
a training time is exactly t = 1, the only time a one-step sampler evaluates) changes.
Measured: latent MSE of the 1-step prediction vs the bicubic baseline (residual = 0) on the
held-apart validation crops of the training pool (not a benchmark set), and PSNR-Y.

    python benchmarks/terminal_mass.py            # ~2 min on 2 CPU cores
writes docs/results/terminal_mass.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from upstep.degrade import degrade, quantize
from upstep.diffusion.schedule import sample_t
from upstep.metrics import psnr
from upstep.model import SRDiffusionModel
from upstep.recipes.standard import diffusion_loss
from upstep.train.data import HRCropDataset, step_generator

OUT = Path(__file__).resolve().parents[1] / "docs" / "results"


def run_arm(p_terminal: float, omega_max: float, steps: int, val: torch.Tensor, data: HRCropDataset) -> dict:
    torch.manual_seed(0)
    model = SRDiffusionModel.from_config({
        "kind": "vdiffusion", "scale": 4, "target": "residual",
        "autoencoder": {"kind": "pixel_unshuffle", "factor": 4},
        "unet": {"latent_channels": 48, "block_out_channels": [32, 64], "layers_per_block": 1, "norm_num_groups": 8},
        "schedule": {"omega_max": omega_max}})
    opt = torch.optim.AdamW(model.unet.parameters(), 1e-3)

    def encode(hr):
        up = model.upsample_lr(degrade(hr, 4, "bicubic") * 2 - 1, hr.shape[-2:])
        return model.autoencoder.encode(hr * 2 - 1), model.encode_cond(up)

    t0 = time.time()
    for step in range(steps):
        g = step_generator(0, step)
        z_h, z_l = encode(data.batch(16, g))
        z0 = z_h - z_l
        t = sample_t(16, p_terminal=p_terminal, generator=g)
        loss = diffusion_loss(model, z0, z_l, t, torch.randn(z0.shape, generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        z_h, z_l = encode(val)
        sr = (model.upscale_tensor(degrade(val, 4, "bicubic") * 2 - 1, steps=1, generator=g).clamp(-1, 1) + 1) / 2
        pred = model.sample_latent(z_l, torch.randn(z_l.shape, generator=g), 1)
    return {"p_terminal": p_terminal, "omega_max": omega_max, "steps": steps,
            "latent_mse_model": float((pred - z_h).pow(2).mean()),
            "latent_mse_bicubic": float((z_l - z_h).pow(2).mean()),
            "psnr_y_model": float(psnr(quantize(sr), val, crop_border=4).mean()),
            "psnr_y_bicubic": float(psnr(quantize((model.upsample_lr(degrade(val, 4, "bicubic") * 2 - 1) + 1) / 2), val,
                                         crop_border=4).mean()),
            "train_seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--arms", default="0.0:1000,0.5:5,0.8:5,1.0:5", help="p_terminal:omega_max pairs")
    args = ap.parse_args()
    data = HRCropDataset.from_config(["train/bsds500_train"], 64, "train")
    val = HRCropDataset.from_config(["train"], 128, "val").center_crops(16)
    rows = []
    for arm in args.arms.split(","):
        p, om = (float(x) for x in arm.split(":"))
        rows.append(run_arm(p, om, args.steps, val, data))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"command": "python benchmarks/terminal_mass.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
            "date": date.today().isoformat(), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}", "data": "train: ../shared/data/train/bsds500_train 64px crops; "
            "validation: 16 held-apart 128px centre crops of the training pool (hash split), bicubic x4"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "terminal_mass.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# Training mass at t = 1 vs one-step quality\n", f"`{meta['command']}` — {meta['date']}, {meta['machine']}.",
             f"{meta['data']}. U-Net [32, 64], {args.steps} steps, batch 16, AdamW 1e-3, fp32, residual target.\n",
             "| p_terminal | omega_max | latent MSE (model) | latent MSE (bicubic) | PSNR-Y model | PSNR-Y bicubic |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['p_terminal']} | {r['omega_max']} | {r['latent_mse_model']:.5f} | {r['latent_mse_bicubic']:.5f} "
                     f"| {r['psnr_y_model']:.2f} | {r['psnr_y_bicubic']:.2f} |")
    (OUT / "terminal_mass.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
