"""Training checkpoints: safetensors for every tensor, JSON for everything else. No pickle.

Layout of a run folder::

    RUN/checkpoints/step_000500/tensors.safetensors   module, EMA and optimizer tensors
    RUN/checkpoints/step_000500/state.json            step, optimizer param groups and scalars,
                                                      the fp16 GradScaler's state, config
    RUN/latest.json                                   {"step": 500, "path": "checkpoints/step_000500"}

A checkpoint folder is written under a temporary name and renamed into place, and
``latest.json`` is replaced atomically after it, so a run killed at any instant leaves
the previous checkpoint intact and ``latest.json`` pointing at a complete one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from upstep.errors import UpstepError
from upstep.model import save_json


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{name}.{idx}.{k}"] = v
            else:
                scalars[f"{idx}.{k}"] = v
    meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(name: str, tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    prefix = f"opt.{name}."
    for key, v in tensors.items():
        if key.startswith(prefix):
            idx, k = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta[name]["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta[name]["param_groups"]}


def save_checkpoint(run_dir: Path, step: int, modules: dict, optimizers: dict, emas: dict,
                    extra: dict | None = None, keep: int = 2, scaler=None) -> Path:
    """``scaler``: the mixed-precision ``GradScaler`` (fp16), if any: its loss scale and growth
    tracker decide which later steps are skipped, so an exact resume needs them."""
    run_dir = Path(run_dir)
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        for k, v in m.state_dict().items():
            tensors[f"module.{name}.{k}"] = v
    for name, e in emas.items():
        for k, v in e.state_dict().items():
            tensors[f"ema.{name}.{k}"] = v
    opt_meta: dict = {}
    for name, opt in optimizers.items():
        _flatten_optimizer(name, opt, tensors, opt_meta)
    tensors = {k: v.detach().contiguous().cpu().clone() for k, v in tensors.items()}
    state = {"step": step, "optimizers": opt_meta,
             "ema_updates": {n: e.updates for n, e in emas.items()}, "extra": extra or {}}
    if scaler is not None:
        state["grad_scaler"] = {k: (v.item() if torch.is_tensor(v) else v) for k, v in scaler.state_dict().items()}

    final = ckpt_root / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=".tmp_"))
    try:
        save_file(tensors, str(tmp / "tensors.safetensors"))
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    save_json({"step": step, "path": str(final.relative_to(run_dir))}, run_dir / "latest.json")
    # prune old checkpoints, keeping the newest `keep`
    olds = sorted(p for p in ckpt_root.glob("step_*") if p != final)
    for p in olds[: max(0, len(olds) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def _with_versions(module: torch.nn.Module, state: dict) -> OrderedDict:
    """``state`` with the per-submodule format versions that ``Module.state_dict`` attaches and a
    safetensors file cannot hold (the checkpoint was written by these same modules). Without them
    torch treats the tensors as pre-2019 BatchNorm state and inserts ``num_batches_tracked`` keys,
    which a frozen network (``upstep.nn.efficientnet``: no persistent buffers) then rejects."""
    out = OrderedDict(state)
    out._metadata = OrderedDict((name, {"version": m._version}) for name, m in module.named_modules())  # type: ignore[attr-defined]
    return out


class CheckpointError(UpstepError, RuntimeError):
    """A run folder's checkpoint cannot be resumed; the message says what to do."""


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint ``latest.json`` names; where that file is missing or unreadable, or names a
    folder that is gone (a copy of the run that missed them), the newest complete
    ``checkpoints/step_*`` (each is renamed into place whole)."""
    marker = Path(run_dir) / "latest.json"
    try:
        path = Path(run_dir) / json.loads(marker.read_text())["path"]
        if (path / "state.json").is_file():
            return path
    except (OSError, ValueError, KeyError, TypeError):
        pass
    done = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


def load_checkpoint(path: Path, modules: dict, optimizers: dict, emas: dict, scaler=None) -> dict:
    """Restore in place; returns the state dict (``step``, ``extra``). A checkpoint written
    without a GradScaler (fp32/bf16) leaves ``scaler`` at its initial state."""
    try:
        tensors = load_file(str(Path(path) / "tensors.safetensors"))
        state = json.loads((Path(path) / "state.json").read_text())
    except Exception as e:  # OSError, JSON errors, and safetensors' own SafetensorError
        raise CheckpointError(f"{path}: this checkpoint cannot be read ({type(e).__name__}: {e}). Nothing was "
                           "changed; to resume from the previous checkpoint, point latest.json at its folder, "
                           "or start a fresh --run-dir") from e
    for name, m in modules.items():
        p = f"module.{name}."
        saved = _with_versions(m, {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)})
        missing, unexpected = m.load_state_dict(saved, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{path}: the {name} weights do not match the run's networks "
                               f"(missing {missing[:3]}, unexpected {unexpected[:3]}); was the run folder "
                               "made by another version or config? Resume with that, or use a fresh --run-dir")
    for name, e in emas.items():
        p = f"ema.{name}."
        e.load_state_dict({k[len(p):]: v for k, v in tensors.items() if k.startswith(p)},
                          state["ema_updates"][name])
    for name, opt in optimizers.items():
        opt.load_state_dict(_unflatten_optimizer(name, tensors, state["optimizers"]))
    if scaler is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    return state
