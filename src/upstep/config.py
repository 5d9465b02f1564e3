"""Recipe configs: JSON files (configs/*.json), with ``--set key.sub=value`` overrides."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from upstep.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def load_config(path: str | Path, overrides: list[str] | None = None) -> dict:
    p = Path(path)
    for candidate in (CONFIG_DIR / p, CONFIG_DIR / f"{p}.json"):   # a bundled config, with or without .json
        if not p.is_file() and candidate.is_file():
            p = candidate
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
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):   # stages.0.train.steps: a list entry by its index
            if not (part.isdigit() and int(part) < len(node)):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[:i])} is a list of {len(node)}; "
                                  f"{part!r} is not an index of it")
            node = node[int(part)]
        elif isinstance(node, dict):
            if node.get(part) is None:   # absent, or null: a section now (perceptual.decoder.width=48)
                node[part] = {}
            node = node[part]
        else:
            raise ConfigError(f"override {item!r}: {'.'.join(parts[:i])} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):   # block_out_channels.0=16
        node[int(last)] = _checked(item, node[int(last)], value)
        return
    if not isinstance(node, dict):
        raise ConfigError(f"override {item!r}: {'.'.join(parts[:-1]) or key} is "
                          f"{'a list' if isinstance(node, list) else 'a value'} ({json.dumps(node)}), not a section")
    node[last] = _checked(item, node.get(last), value)


def _checked(item: str, old, value):
    """``value`` for a setting that held ``old``: a number stays a number (a whole one whole), a list
    a list; other settings take any JSON (some hold a name or a mixture, a path or null)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if number(old) and not number(value) and value is not None:   # null: "off" for some settings
        raise ConfigError(f"override {item!r}: this setting is a number (now {old!r}); give a number")
    if isinstance(old, int) and not isinstance(old, bool) and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"override {item!r}: this setting is a whole number (now {old!r})")
        value = int(value)
    if isinstance(old, list) and not isinstance(value, list):
        raise ConfigError(f"override {item!r}: this setting is a list (now {json.dumps(old)}); give one in JSON, "
                          f"e.g. {item.split('=', 1)[0]}='[\"{value}\"]'")
    return value
