"""Copy a trained model into the package as a shipped model, stored in float16.

    python scripts/ship_model.py runs/sr_x4_small default-x4

RUN is an ``upstep train`` run folder (its ``model/`` is the EMA export, ``config.json`` the
training config, ``log.jsonl`` the log). The shipped ``config.json`` records where it came
from: the training config, steps trained and the last validation figures. float16 halves the
file; ``load_model`` computes in float32 (the half-precision rounding of the weights changes
outputs by well under one 8-bit level; ``tests/test_shipped.py`` checks the quality bar).
"""
import json
import sys
from pathlib import Path

import torch

from upstep.errors import UpstepError
from upstep.model import load_model, save_model
from upstep.paths import package_weights_dir


def main(run: str, name: str) -> None:
    run_dir = Path(run)
    for need in (run_dir / "config.json", run_dir / "log.jsonl"):
        if not need.is_file():
            raise UpstepError(f"{run_dir}: missing {need.name}; give the folder of a finished `upstep train` run")
    model = load_model(run_dir / "model")
    train_cfg = json.loads((run_dir / "config.json").read_text())
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    last_val = next((r for r in reversed(log) if "val_psnr" in r), {})
    info = {"trained_with": f"upstep train configs/{train_cfg['name']}.json --run-dir {run}",
            "train_config": train_cfg, "steps": log[-1]["step"] if log else None,
            "val_psnr_y_1step": last_val.get("val_psnr"), "val_psnr_y_bicubic": last_val.get("val_psnr_bicubic"),
            "weights_dtype": "float16"}
    out = save_model(model, package_weights_dir() / name, dtype=torch.float16, extra=info)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"shipped {run_dir / 'model'} as {name} in {out} ({size:.1f} MiB)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        main(*sys.argv[1:])
    except UpstepError as e:
        sys.exit(f"ship_model: error: {e}")
