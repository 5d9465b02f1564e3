"""The GPU check behind scripts/gpu_check.sh (read that file first).

Three phases, each bounded in time, each result written to OUT/gpu_check.json as soon as it
exists (a killed check keeps what it measured):

1. ``tests``: the test suite (``pytest -q``) in a subprocess; on a CUDA machine the training
   loop and ``upstep.load(device="auto")`` run on the GPU.
2. ``train_tiny_sd``: ``configs/gpu/sd_tiny_check.json`` (bf16, gradient checkpointing, SDPA,
   EMA) from a tiny random SD folder (``upstep.testing``), on generated images.
3. ``upscale``: ONE-step upscaling of a 512x512 image to 2048x2048 (x4) with a randomly
   initialised model of Stable Diffusion 1.5's shape (860M-parameter UNet2DConditionModel,
   its VAE architecture), default tiling (128-px LR tiles, 16-px overlap), under fp16 and bf16
   autocast: one warm-up, then the median of 5 timed runs, and the peak GPU memory.
   Random weights time the same as trained ones; no quality is measured.

``--device cpu --smoke`` runs the same code with tiny sizes on a CPU (what the tests do, so
the script is exercised without a GPU); its JSON says ``"smoke": true`` and is no measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def machine(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "device": device.type}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ---- 1. the test suite ----------------------------------------------------------------------
def run_tests(timeout_s: int) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider"]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        raw = e.stdout or ""
        out, rc = (raw.decode(errors="replace") if isinstance(raw, bytes) else raw), None
    lines = out.strip().splitlines()
    summary = next((l for l in reversed(lines) if re.search(r"\b(passed|failed|error)", l)), "")
    return {"command": " ".join(["python", *cmd[1:]]), "returncode": rc, "timed_out": rc is None,
            "timeout_s": timeout_s, "summary": summary.strip("= "),
            "failed": [l for l in lines if l.startswith(("FAILED", "ERROR"))][:50],
            "seconds": round(time.time() - t0, 1)}


# ---- 2. a tiny SD-shaped training run -------------------------------------------------------
def make_images(folder: Path, n: int = 12, size: int = 96) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        a = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        Image.fromarray(a).resize((size, size), Image.BICUBIC).save(folder / f"img{i:03d}.png")


def train_tiny(device: torch.device, steps: int, work: Path, smoke: bool = False) -> dict:
    from upstep.config import load_config
    from upstep.testing import make_tiny_sd_folder
    from upstep.train.loop import train

    make_images(work / "data" / "train" / "pkg_samples")
    os.environ["UPSTEP_DATA"] = str(work / "data")
    make_tiny_sd_folder(work / "tiny-sd", text_encoder=True)
    cfg = load_config("gpu/sd_tiny_check.json")
    cfg["model"]["init_from"] = str(work / "tiny-sd")
    cfg["train"].update(steps=steps, checkpoint_every=steps, device=device.type)
    if smoke:
        cfg["train"]["batch"], cfg["data"]["crop"] = 2, 32
    reset_peak(device)
    t0 = time.time()
    train(cfg, work / "run", progress=False)
    sync(device)
    secs = time.time() - t0
    logs = [json.loads(l) for l in (work / "run" / "log.jsonl").read_text().splitlines()]
    return {"config": "configs/gpu/sd_tiny_check.json", "init_from": "upstep.testing.make_tiny_sd_folder",
            "steps": steps, "batch": cfg["train"]["batch"], "crop": cfg["data"]["crop"],
            "mixed_precision": cfg["train"]["mixed_precision"], "seconds": round(secs, 1),
            "seconds_per_step": round(secs / steps, 4), "peak_gpu_mib": peak_mib(device),
            "loss_first_logged": logs[0]["loss"], "loss_last_logged": logs[-1]["loss"],
            "loss_finite": all(np.isfinite(r["loss"]) for r in logs)}


# ---- 3. 1-step 512^2 -> 2048^2 timing -------------------------------------------------------
def sd15_shaped_model(device: torch.device, smoke: bool):
    """A random SR model of SD 1.5's architecture (or the tiny one with ``smoke``)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from upstep.init_from import widen_unet
    from upstep.model import SRDiffusionModel
    from upstep.nn.autoencoders import KLAutoencoder

    torch.manual_seed(0)
    with torch.device(device):
        if smoke:
            from upstep.testing import TEXT_LEN

            ch, text = (8, 16), (TEXT_LEN, 16)
            vae = AutoencoderKL(block_out_channels=ch, down_block_types=("DownEncoderBlock2D",) * 2,
                                up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                                norm_num_groups=4, scaling_factor=0.18215)
            unet = UNet2DConditionModel(block_out_channels=ch, layers_per_block=1, norm_num_groups=4,
                                        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                        cross_attention_dim=16, attention_head_dim=2)
        else:  # SD 1.5's configs (runwayml/stable-diffusion-v1-5 unet/ and vae/ config.json)
            text = (77, 768)
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                                up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=4,
                                norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
            unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
        unet = widen_unet(unet, 4, null_embedding=torch.zeros(1, *text))
        model = SRDiffusionModel(KLAutoencoder(vae=vae, scaling=0.18215), unet, scale=4, target="latent")
    return model.eval()


def time_upscale(device: torch.device, smoke: bool, size: int, runs: int) -> dict:
    from upstep.api import Upscaler
    from upstep.nn.unet import count_parameters

    model = sd15_shaped_model(device, smoke)
    g = torch.Generator().manual_seed(0)
    lr = torch.nn.functional.interpolate(torch.rand(1, 3, size // 16, size // 16, generator=g), size=(size, size),
                                         mode="bicubic").clamp(0, 1)
    out = {"model": "random weights, Stable Diffusion 1.5 architecture" if not smoke else "tiny random (smoke)",
           "unet_parameters": count_parameters(model.unet), "vae_parameters": count_parameters(model.autoencoder),
           "input": [size, size], "output": [4 * size, 4 * size], "steps": 1, "tile": 128, "overlap": 16,
           "runs": runs, "statistic": "median after one warm-up run",
           "timed": "upstep.load(...).upscale_tensor: CPU bicubic upsample, tiles through encoder, U-Net, "
                    "decoder on the device, blending (what `upstep upscale --dtype` does)"}
    dtypes = (("fp16", "float16"), ("bf16", "bfloat16"))
    if device.type == "cpu":  # upstep refuses float16 on CPU (emulated, slow): the smoke run times fp32
        dtypes = (("fp32", "float32"), ("bf16", "bfloat16"))
    for name, dtype in dtypes:
        up = Upscaler(model, device=device.type, dtype=dtype, tile=128, overlap=16)
        reset_peak(device)
        t0 = time.time()
        y = up.upscale_tensor(lr, seed=0)
        sync(device)
        warm = time.time() - t0
        times = []
        for _ in range(runs):
            t0 = time.time()
            up.upscale_tensor(lr, seed=0)
            sync(device)
            times.append(time.time() - t0)
        out[name] = {"median_s": round(statistics.median(times), 4), "runs_s": [round(t, 4) for t in times],
                     "warmup_s": round(warm, 4), "peak_gpu_mib": peak_mib(device),
                     "output_finite": bool(torch.isfinite(y).all())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU exercise of this script, no measurement)")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--tests-timeout", type=int, default=240)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--size", type=int, default=512, help="LR input side for the timing (x4 output)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.smoke:
        torch.set_num_threads(1)  # tiny tensors: threads only contend
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; nothing measured", file=sys.stderr)
        return 0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {"command": "scripts/gpu_check.sh " + str(out_dir), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(device), "smoke": args.smoke}
    t_start = time.time()

    def write():
        result["total_seconds"] = round(time.time() - t_start, 1)
        (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")

    phases = [("tests", lambda: run_tests(args.tests_timeout))] if not args.skip_tests else []
    with tempfile.TemporaryDirectory() as tmp:
        phases += [("train_tiny_sd", lambda: train_tiny(device, args.train_steps, Path(tmp), args.smoke)),
                   ("upscale", lambda: time_upscale(device, args.smoke, args.size, args.runs))]
        for name, fn in phases:
            print(f"gpu_check: {name} ...", flush=True)
            try:
                result[name] = fn()
            except Exception as e:  # record and go on: a later phase may still measure
                result[name] = {"error": f"{type(e).__name__}: {e}"}
            write()
            print(f"gpu_check: {name}: {json.dumps(result[name])[:400]}", flush=True)
    failed = [n for n, _ in phases if "error" in result[n]]
    tests_ok = args.skip_tests or result["tests"].get("returncode") == 0
    print(f"gpu_check: wrote {out_dir / 'gpu_check.json'} in {result['total_seconds']} s")
    return 0 if not failed and tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
