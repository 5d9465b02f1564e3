"""Benchmark sets on disk: ``<data_root>/eval/<set>/hr`` and/or ``<set>/lr`` (names match 1:1;
LR is HR/4). Paired sets get full-reference metrics; LR-only sets (realset65) no-reference ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from upstep.errors import UpstepError
from upstep.io import list_inputs, read_image, to_model_rgb
from upstep.paths import data_root

KNOWN_SETS = ("set5", "set14", "bsd100", "imagenet_valsr_resshift", "realsr_canon", "realset65")
NATIVE_SCALE = 4  # the LR files on disk are x4


@dataclass(frozen=True)
class Item:
    name: str
    lr_path: Path | None
    hr_path: Path | None


@dataclass
class BenchmarkSet:
    name: str
    root: Path
    items: list[Item]

    @property
    def paired(self) -> bool:
        return all(it.hr_path is not None for it in self.items)

    def load(self, item: Item, scale: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(LR, HR or None) as 1x3xHxW in [0, 1]. At x4 the set's own LR is used; at other
        scales the LR is MATLAB-bicubic of the HR (cropped to a multiple of ``scale``)."""
        from upstep.degrade import bicubic

        hr = to_model_rgb(read_image(item.hr_path))[None] if item.hr_path else None
        if hr is not None:
            h, w = hr.shape[-2:]
            hr = hr[..., : h - h % scale, : w - w % scale]
        if scale == NATIVE_SCALE and item.lr_path is not None:
            lr = to_model_rgb(read_image(item.lr_path))[None]
            if hr is not None and any(not 0 <= h - s * scale < scale for s, h in zip(lr.shape[-2:], hr.shape[-2:])):
                raise UpstepError(f"{item.lr_path}: {lr.shape[-1]}x{lr.shape[-2]} is not 1/{scale} of its HR "
                                  f"({item.hr_path.name}, {hr.shape[-1]}x{hr.shape[-2]}); a set's lr/ holds x{scale} "
                                  "LR of its hr/ (upstep degrade --scale 4 writes such pairs)")
            if hr is not None and tuple(x * scale for x in lr.shape[-2:]) != tuple(hr.shape[-2:]):
                hr = hr[..., : lr.shape[-2] * scale, : lr.shape[-1] * scale]
        elif hr is not None:
            lr = bicubic(hr, scale)
        else:
            raise UpstepError(f"{item.lr_path}: LR-only set {self.name} has no x{scale} inputs (only x4)")
        return lr, hr

    def load_real_lr(self, item: Item, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR, HR) at ``scale`` that start from the set's own LR file (e.g. realsr_canon's real
        camera LR), so that HR is exactly ``scale`` times the LR:
        * ``scale`` dividing 4: the LR file as it is, and the x4 HR brought down to it by MATLAB
          bicubic (``4 / scale``). For a real-camera set this is a real-camera task at ``scale``:
          the input is a real photo, the reference a sharper photo of the same scene.
        * ``scale`` a multiple of 4 (x8): the HR as it is, and the LR file taken down a further
          ``scale / 4`` by MATLAB bicubic (its size first cropped to a multiple of that). The input
          keeps the camera's blur and noise, weakened by the extra downscaling: a real-camera-like
          task, not a real-camera pair."""
        from upstep.degrade import quantize
        from upstep.degrade.resize import imresize

        if item.lr_path is None or item.hr_path is None:
            raise UpstepError(f"{self.name}/{item.name}: needs both an LR and an HR file")
        if NATIVE_SCALE % scale and scale % NATIVE_SCALE:
            raise UpstepError(f"set {self.name}: its own x{NATIVE_SCALE} LR serves scales dividing "
                              f"{NATIVE_SCALE} (1, 2, 4) or multiples of it (8), not x{scale}")
        lr = to_model_rgb(read_image(item.lr_path))[None]
        extra = max(1, scale // NATIVE_SCALE)   # the LR's own further downscaling (x8: 2)
        h, w = lr.shape[-2] // extra * extra, lr.shape[-1] // extra * extra
        lr = lr[..., :h, :w]
        hr = to_model_rgb(read_image(item.hr_path))[None][..., : h * NATIVE_SCALE, : w * NATIVE_SCALE]
        if scale < NATIVE_SCALE:
            hr = quantize(imresize(hr, scale / NATIVE_SCALE))
        elif extra > 1:
            lr = quantize(imresize(lr, 1 / extra))
        return lr, hr


def set_subfolder(base: Path, kind: str) -> Path | None:
    """A set's ``hr`` or ``lr`` folder (``HR``/``LR`` too: what `upstep degrade` writes), or None."""
    return next((base / k for k in (kind, kind.upper()) if (base / k).is_dir()), None)


def open_set(name: str, root: Path | None = None) -> BenchmarkSet:
    base = (root or data_root()) / "eval" / name
    if not base.is_dir():
        raise UpstepError(f"benchmark set {name!r} not found at {base}; set UPSTEP_DATA or --data-root "
                          f"(known sets: {', '.join(KNOWN_SETS)})")
    def sub(kind: str) -> dict:
        folder = set_subfolder(base, kind)
        return {p.stem: p for p in list_inputs([folder])} if folder else {}

    hr, lr = sub("hr"), sub("lr")
    names = sorted(set(hr) | set(lr))
    if not names:
        raise UpstepError(f"benchmark set {name!r} at {base} holds no images: a set keeps them in hr/ and/or lr/ "
                          "(file names matching 1:1, LR 1/4 of HR)")
    return BenchmarkSet(name, base, [Item(n, lr.get(n), hr.get(n)) for n in names])
