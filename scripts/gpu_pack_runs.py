"""Pack GPU training runs for the trip back (the device tool returns files of at most 16 MiB):
config.json, log.jsonl, the run's .out log and the model in float16.

    python scripts/gpu_pack_runs.py RUNS DEST.tar.gz [NAME ...]
"""
import sys, tarfile, shutil, torch
from pathlib import Path
from upstep.model import load_model, save_model
runs, dest, only = Path(sys.argv[1]), Path(sys.argv[2]), set(sys.argv[3:])
tmp = Path("/tmp/pack_" + dest.stem.split(".")[0]); shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir()
for out in sorted(runs.glob("*.out")):
    name = out.stem
    if only and name not in only: continue
    d = tmp / name; d.mkdir()
    shutil.copy(out, d / "train.out")
    for f in ("config.json", "log.jsonl"):
        if (runs / name / f).is_file(): shutil.copy(runs / name / f, d / f)
    if (runs / name / "model" / "model.safetensors").is_file():
        save_model(load_model(runs / name / "model"), d / "model", dtype=torch.float16)
with tarfile.open(dest, "w:gz") as t: t.add(tmp, arcname="runs")
print("packed", dest, dest.stat().st_size)
