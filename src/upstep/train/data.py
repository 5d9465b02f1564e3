"""Training data: a folder (or several) of HR photos -> random HR crops, batched.

LR images are NOT stored: recipes synthesise them on the fly from the HR crop with the
configured degradation (``upstep.degrade.degrade``), so one HR pool serves every scale.

Reproducibility: the batch for optimisation step ``k`` is a pure function of
(seed, k, process index) — resuming at step k sees exactly the batches an uninterrupted
run would have seen, with no sampler state to save.

A held-apart validation split is chosen by hashing file names (stable as files are added).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from upstep.errors import ConfigError
from upstep.paths import data_root

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def _is_val(name: str, val_fraction: float) -> bool:
    h = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < val_fraction


def resolve_dirs(dirs: list[str]) -> list[Path]:
    out = []
    for d in dirs:
        p = Path(d).expanduser()
        if not p.is_absolute() and not p.exists():
            p = data_root() / d
        if not p.is_dir():
            raise ConfigError(f"training folder {d!r} not found (looked at {p}); set UPSTEP_DATA or "
                              "give an absolute path")
        out.append(p)
    return out


def list_images(dirs: list[Path]) -> list[Path]:
    files = []
    for d in dirs:
        files += sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    return files


@dataclass
class HRCropDataset:
    """In-memory (decoded lazily, cached) HR images with random crops of ``crop`` pixels."""

    files: list[Path]
    crop: int

    def __post_init__(self):
        self._cache: dict[int, torch.Tensor] = {}
        self.skipped: list[tuple[Path, str]] = []

    @classmethod
    def from_config(cls, dirs: list[str], crop: int, split: str = "train", val_fraction: float = 0.02,
                    limit: int | None = None) -> "HRCropDataset":
        files = list_images(resolve_dirs(dirs))
        want_val = split == "val"
        files = [f for f in files if _is_val(f.name, val_fraction) == want_val]
        kept = []
        for f in files:
            try:
                with Image.open(f) as im:
                    if min(im.size) >= crop:
                        kept.append(f)
            except OSError:
                continue  # unreadable files are simply not part of the pool
        if limit:
            kept = kept[:limit]
        if not kept:
            raise ConfigError(f"no {split} images of at least {crop}px in {dirs}")
        return cls(kept, crop)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        """uint8 CHW RGB tensor (grayscale repeated, alpha dropped)."""
        if i not in self._cache:
            with Image.open(self.files[i]) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
                self._cache[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
        return self._cache[i]

    def batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """NCHW float32 in [0, 1]: ``size`` random crops with random flips / 90° rotations."""
        idx = torch.randint(len(self), (size,), generator=generator)
        crops = []
        for i in idx.tolist():
            img = self.image(i)
            _, h, w = img.shape
            y = int(torch.randint(h - self.crop + 1, (1,), generator=generator))
            x = int(torch.randint(w - self.crop + 1, (1,), generator=generator))
            c = img[:, y:y + self.crop, x:x + self.crop]
            aug = int(torch.randint(8, (1,), generator=generator))
            if aug & 1:
                c = c.flip(-1)
            c = torch.rot90(c, aug >> 1, dims=(-2, -1))
            crops.append(c)
        return torch.stack(crops).float() / 255.0

    def center_crops(self, n: int) -> torch.Tensor:
        """Deterministic validation batch: the centre crop of the first ``n`` images."""
        out = []
        for i in range(min(n, len(self))):
            img = self.image(i)
            _, h, w = img.shape
            y, x = (h - self.crop) // 2, (w - self.crop) // 2
            out.append(img[:, y:y + self.crop, x:x + self.crop])
        return torch.stack(out).float() / 255.0


def step_generator(seed: int, step: int, stream: int = 0, process: int = 0) -> torch.Generator:
    """The generator for one (step, stream): data crops, degradation, t and noise draws."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step * 101 + stream * 7 + process * 7919) % (2**63))
    return g
