"""Cached latents of a frozen encoder (``train.latent_cache``).

Training in a learned (KL) latent runs the frozen encoder on every HR crop and on every
conditioning image, every step: on a CPU that is most of a step. With a finite crop pool
(``data.crop_pool``) and a deterministic degradation, the same inputs come back every epoch, so
each sample's latent is computed once and looked up afterwards.

Entries are keyed by the encoder's identity (a digest of its weights and class) and the
sample's exact bytes, so a hit returns what the encoder would return (it is computed one
sample at a time, which makes the value independent of which other samples shared its batch,
and a resumed run identical to an uninterrupted one). With a folder, new entries are written
at each checkpoint as one more safetensors part file (atomic; one writer per file, so several
runs may share a folder) and every part is read back when a run starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from upstep.errors import ConfigError

DETERMINISTIC_DEGRADATIONS = ("bicubic", "avgpool")
RECIPES = ("standard", "scale_distill")   # the recipes that encode through ``Recipe.encode_frozen``


def encoder_digest(module: nn.Module) -> str:
    """Identity of a frozen autoencoder: its class, its settings (``config()``: factor, latent
    scaling...) and every parameter and buffer, byte for byte."""
    h = hashlib.blake2b(type(module).__qualname__.encode(), digest_size=16)
    if hasattr(module, "config"):
        h.update(json.dumps(module.config(), sort_keys=True, default=str).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sample_key(x: torch.Tensor) -> str:
    """Digest of one input sample (shape, dtype and bytes)."""
    h = hashlib.blake2b(str((tuple(x.shape), x.dtype)).encode(), digest_size=16)
    h.update(x.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class LatentCache:
    """Per-sample memo of ``autoencoder.encode``; at most ``max_entries`` kept in memory (least
    recently used dropped first, with a warning: a pool larger than that is recomputed). Each entry
    is one latent, e.g. 32 KiB for a 128-px crop at f = 4 with 8 float32 channels."""

    def __init__(self, folder: Path | None = None, max_entries: int = 100_000):
        self.folder = Path(folder) if folder is not None else None
        self.max_entries = max_entries
        self._entries: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._unsaved: dict[str, torch.Tensor] = {}
        self._digests: dict[int, str] = {}
        self._loaded: set[str] = set()
        self.hits = self.misses = 0
        self._warned = False

    @classmethod
    def from_config(cls, cfg: dict, run_dir: Path) -> "LatentCache | None":
        """``train.latent_cache``: false (default), true (a folder in the run) or a folder path.
        Needs ``data.crop_pool`` (without it no crop repeats) and a deterministic degradation."""
        setting = cfg["train"].get("latent_cache", False)
        if not setting:
            return None
        if cfg.get("recipe") not in RECIPES:
            raise ConfigError(f"train.latent_cache works with the {' and '.join(RECIPES)} recipes (a frozen "
                              f"encoder), not {cfg.get('recipe')!r}")
        data = cfg["data"]
        if not data.get("crop_pool"):
            raise ConfigError("train.latent_cache needs data.crop_pool (a fixed pool of crops): with fresh random "
                              "crops no latent is ever seen twice")
        deg = data.get("degradation", "bicubic")
        if deg not in DETERMINISTIC_DEGRADATIONS:
            raise ConfigError(f"train.latent_cache needs a deterministic degradation "
                              f"({' or '.join(DETERMINISTIC_DEGRADATIONS)}), not {deg!r}: random LR images "
                              "never repeat, so their latents cannot be reused")
        folder = Path(run_dir) / "latent_cache" if setting is True else Path(setting)
        # HR latent + up to three conditioning latents (the x2 / x4 / x8 views of a crop)
        return cls(folder, max_entries=4 * int(data["crop_pool"]))

    def _namespace(self, autoencoder: nn.Module) -> str:
        key = id(autoencoder)
        if key not in self._digests:
            self._digests[key] = digest = encoder_digest(autoencoder)
            self._load(digest)
        return self._digests[key]

    def _load(self, digest: str) -> None:
        if self.folder is None or digest in self._loaded:
            return
        self._loaded.add(digest)
        from safetensors.torch import load_file

        for part in sorted((self.folder / digest).glob("part-*.safetensors")):
            try:
                tensors = load_file(part)
            except Exception as e:  # noqa: BLE001  (a truncated or foreign file)
                raise ConfigError(f"{part}: not a readable latent-cache part ({e}); delete it (its latents "
                                  "are recomputed)") from None
            for k, v in tensors.items():
                self._put(f"{digest}/{k}", v)

    def _put(self, key: str, value: torch.Tensor) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            if not self._warned:
                self._warned = True
                warnings.warn(f"latent cache: more than {self.max_entries} latents; the least recently used "
                              "are dropped and recomputed when seen again", stacklevel=2)

    @torch.no_grad()
    def encode(self, autoencoder: nn.Module, x: torch.Tensor, fn=None) -> torch.Tensor:
        """``fn(x)`` (default ``autoencoder.encode``; e.g. a model's ``encode_cond``, which encodes
        with ``autoencoder``) for a batch, one cached sample at a time. The key holds ``fn``'s name,
        so two encodings of the same bytes never share an entry."""
        fn = fn or autoencoder.encode
        if autoencoder.training or any(p.requires_grad for p in autoencoder.parameters()):
            raise RuntimeError("latent cache: the autoencoder is being trained; only a frozen one's "
                               "latents can be cached")
        ns = self._namespace(autoencoder)
        role = getattr(fn, "__name__", "encode")
        out = []
        for sample in x:
            key = f"{ns}/{role}:{sample_key(sample)}"
            z = self._entries.get(key)
            if z is None:
                self.misses += 1
                z = fn(sample[None])[0].detach().cpu()
                self._put(key, z)
                if self.folder is not None:
                    self._unsaved[key] = z
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            out.append(z)
        return torch.stack(out).to(x.device)

    def flush(self) -> None:
        """Write the entries computed since the last flush as one new part file per encoder."""
        if self.folder is None or not self._unsaved:
            return
        from safetensors.torch import save_file

        from upstep.atomic import atomic_write

        by_ns: dict[str, dict[str, torch.Tensor]] = {}
        for key, z in self._unsaved.items():
            ns, k = key.split("/", 1)
            by_ns.setdefault(ns, {})[k] = z.contiguous()
        for ns, tensors in by_ns.items():
            name = f"part-{time.time_ns()}-{os.getpid()}.safetensors"
            atomic_write(self.folder / ns / name, lambda tmp, t=tensors: save_file(t, tmp))
        self._unsaved.clear()
