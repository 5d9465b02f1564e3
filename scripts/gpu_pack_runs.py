"""Pack GPU training runs for the trip back (the device tool returns files of at most 16 MiB):
config.json, log.jsonl, the run's .out log and the model in float16.

    python scripts/gpu_pack_runs.py RUNS DEST.tar.gz [NAME ...]

RUNS holds ``<name>/`` run folders and ``<name>.out`` logs (scripts/train_real_gpu.sh writes
both); NAMEs pick some of them (default: every ``.out``).
"""
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

from upstep.model import load_model, save_model


def main(runs: Path, dest: Path, only: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for out in sorted(runs.glob("*.out")):
            name = out.stem
            if only and name not in only:
                continue
            d = Path(tmp) / name
            d.mkdir()
            shutil.copy(out, d / "train.out")
            for f in ("config.json", "log.jsonl"):
                if (runs / name / f).is_file():
                    shutil.copy(runs / name / f, d / f)
            if (runs / name / "model" / "model.safetensors").is_file():
                save_model(load_model(runs / name / "model"), d / "model", dtype=torch.float16)
        with tarfile.open(dest, "w:gz") as t:
            t.add(tmp, arcname="runs")
    print("packed", dest, dest.stat().st_size)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: python scripts/gpu_pack_runs.py RUNS DEST.tar.gz [NAME ...]")
    main(Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3:]))
