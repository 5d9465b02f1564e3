"""Where the shared data and offline weights live.

``UPSTEP_DATA`` / ``UPSTEP_WEIGHTS`` override; otherwise ``../shared/data`` and
``../shared/weights`` are looked for beside the current directory and beside the source
checkout. Nothing here downloads anything.
"""
from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _find(env: str, leaf: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    for base in (Path.cwd(), _REPO):
        cand = base.parent / "shared" / leaf
        if cand.is_dir():
            return cand
    return Path.cwd().parent / "shared" / leaf  # may not exist: callers say so clearly


def data_root() -> Path:
    return _find("UPSTEP_DATA", "data")


def weights_root() -> Path:
    return _find("UPSTEP_WEIGHTS", "weights")


def package_weights_dir() -> Path:
    """Models shipped inside the package (safetensors + JSON config per folder)."""
    return Path(__file__).resolve().parent / "weights"
