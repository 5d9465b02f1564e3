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
    """In-memory (decoded lazily, cached) HR images with random crops of ``crop`` pixels.

    ``pool`` > 0 draws every crop from a fixed pool of that many (image, position, flip/rotation)
    choices, made once from ``pool_seed``: the same crops come back every epoch, which is what
    lets a frozen encoder's latents be cached (``train.latent_cache``)."""

    files: list[Path]
    crop: int
    pool: int = 0
    pool_seed: int = 0

    def __post_init__(self):
        self._cache: dict[int, torch.Tensor] = {}
        self.skipped: list[tuple[Path, str]] = []
        self._pool: list[tuple[int, float, float, int]] = []
        if self.pool:
            g = torch.Generator().manual_seed(self.pool_seed)
            images = torch.randint(len(self.files), (self.pool,), generator=g).tolist()
            where = torch.rand(self.pool, 2, generator=g, dtype=torch.float64).tolist()
            augs = torch.randint(8, (self.pool,), generator=g).tolist()
            # positions as fractions of the free range: the image sizes are only known once decoded
            self._pool = [(i, fy, fx, a) for i, (fy, fx), a in zip(images, where, augs)]

    @classmethod
    def from_config(cls, dirs: list[str], crop: int, split: str = "train", val_fraction: float = 0.02,
                    limit: int | None = None, pool: int = 0, pool_seed: int = 0) -> "HRCropDataset":
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
        if pool and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
            raise ConfigError(f"data.crop_pool must be a number of crops (an integer >= 1), not {pool!r}")
        if not kept and want_val and not files:
            raise ConfigError(f"the validation split of {dirs} is empty: data.val_fraction={val_fraction} of its "
                              f"images (picked by file name) is none of them. Raise data.val_fraction (e.g. "
                              "--set data.val_fraction=0.2) or turn validation off (--set train.val_every=0)")
        if not kept:
            raise ConfigError(f"no {split} images of at least {crop}px in {dirs}")
        return cls(kept, crop, int(pool or 0), pool_seed)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        """uint8 CHW RGB tensor (grayscale repeated, alpha dropped)."""
        if i not in self._cache:
            try:
                with Image.open(self.files[i]) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
                    self._cache[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
            except (OSError, SyntaxError, ValueError) as e:   # header fine, pixel data truncated or corrupt
                raise ConfigError(f"{self.files[i]}: cannot read this training image ({e}); repair or remove it, "
                                  "then run the same command again (the run resumes)") from e
        return self._cache[i]

    def batch(self, size: int, generator: torch.Generator) -> torch.Tensor:
        """NCHW float32 in [0, 1]: ``size`` random crops with random flips / 90° rotations."""
        if self.pool:
            return self.pool_crops(torch.randint(self.pool, (size,), generator=generator).tolist())
        idx = torch.randint(len(self), (size,), generator=generator)
        crops = []
        for i in idx.tolist():
            img = self.image(i)
            _, h, w = img.shape
            y = int(torch.randint(h - self.crop + 1, (1,), generator=generator))
            x = int(torch.randint(w - self.crop + 1, (1,), generator=generator))
            aug = int(torch.randint(8, (1,), generator=generator))
            crops.append(self._augment(img[:, y:y + self.crop, x:x + self.crop], aug))
        return torch.stack(crops).float() / 255.0

    def pool_crops(self, indices: list[int]) -> torch.Tensor:
        """NCHW float32 in [0, 1]: the crop pool's entries ``indices`` (as ``batch`` returns them)."""
        return torch.stack([self._pool_crop(k) for k in indices]).float() / 255.0

    def _pool_crop(self, k: int) -> torch.Tensor:
        i, fy, fx, aug = self._pool[k]
        img = self.image(i)
        _, h, w = img.shape
        y, x = int(fy * (h - self.crop + 1)), int(fx * (w - self.crop + 1))
        return self._augment(img[:, y:y + self.crop, x:x + self.crop], aug)

    @staticmethod
    def _augment(c: torch.Tensor, aug: int) -> torch.Tensor:
        """One of the 8 flips / 90° rotations: bit 0 flips, bits 1-2 rotate."""
        if aug & 1:
            c = c.flip(-1)
        return torch.rot90(c, aug >> 1, dims=(-2, -1))

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
