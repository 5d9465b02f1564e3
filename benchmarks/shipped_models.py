"""Inventory of the shipped models: file size, parameter count, SHA-256 and the training config each
one embeds. The README's model table quotes this file for size and parameters; rerun it whenever a
model under src/upstep/weights/ changes.

    python benchmarks/shipped_models.py      # writes docs/results/shipped_models/{models.json,models.md}

Parameters are counted from the tensor shapes in the safetensors header (nothing is loaded), so the
script runs in a second and needs no data.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from pathlib import Path

from upstep.atomic import atomic_write
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "src" / "upstep" / "weights"
OUT = ROOT / "docs" / "results" / "shipped_models"


def inventory(folder: Path) -> dict:
    weights = folder / "model.safetensors"
    raw = weights.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    config = json.loads((folder / "config.json").read_text())
    info = config.get("info", {})
    train = info.get("train_config", {})
    return {"name": folder.name,
            "scale": config.get("scale"),
            "bytes": len(raw),
            "mib": len(raw) / 2 ** 20,
            "parameters": sum(math.prod(t["shape"]) for t in tensors.values()),
            "dtypes": sorted({t["dtype"] for t in tensors.values()}),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "train_config_name": train.get("name"),
            "recipe": train.get("recipe"),
            "steps": info.get("steps")}


def main() -> None:
    models = [inventory(d) for d in sorted(WEIGHTS.iterdir()) if (d / "model.safetensors").is_file()]
    result = {"models": models, **provenance()}
    write_json(OUT / "models.json", result)
    rows = [[m["name"], f"x{m['scale']}", f"{m['mib']:.2f}", f"{m['parameters'] / 1e6:.2f} M",
             "/".join(m["dtypes"]), f"{m['recipe']} ({m['train_config_name']}, {m['steps']} steps)",
             f"`{m['sha256'][:16]}…`"] for m in models]
    md = "\n".join(["# Shipped models: size, parameters, checksum", "", provenance_md(result), "",
                    "Size: `model.safetensors` in MiB. Parameters: counted from the tensor shapes. "
                    "Last stage: the training config embedded in the model's `config.json` "
                    "(`info.train_config`). Full SHA-256 in `models.json`.", "",
                    md_table(["model", "scale", "MiB", "parameters", "dtype", "last training stage", "SHA-256"],
                             rows), ""])
    atomic_write(OUT / "models.md", lambda tmp: Path(tmp).write_text(md))
    print(md)


if __name__ == "__main__":
    main()
