"""Recipe configs: JSON files (configs/*.json), with ``--set key.sub=value`` overrides."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from upstep.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    p = Path(path)
    if not p.is_file() and (CONFIG_DIR / p).is_file():
        p = CONFIG_DIR / p
    if not p.is_file():
        raise ConfigError(f"config {path}: file not found (the bundled ones are in {CONFIG_DIR})")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config {p}: invalid JSON at line {e.lineno}: {e.msg}") from e
    base = cfg.pop("extends", None)
    if base:
        parent = load_config(p.parent / base)
        cfg = merge(parent, cfg)
    for item in overrides or []:
        apply_override(cfg, item)
    return cfg


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_override(cfg: dict, item: str) -> None:
    """``train.steps=100`` (the value is parsed as JSON when it can be, else kept as text)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key.path=value")
    key, raw = item.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    node = cfg
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
