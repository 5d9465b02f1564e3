"""Python API: ``upstep.load(name_or_path).upscale(pil_image)``.

``name_or_path`` is a shipped model name (``upstep.available_models()``: e.g. "default-x4")
or a folder with ``config.json`` + ``model.safetensors``. Nothing is ever downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from upstep.errors import ModelLoadError, UpstepError
from upstep.model import load_model
from upstep.paths import package_weights_dir
from upstep.pipeline import TiledUpscaler

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def available_models() -> list[str]:
    root = package_weights_dir()
    return sorted(p.name for p in root.iterdir() if (p / "config.json").is_file()) if root.is_dir() else []


def default_model_for(scale: int) -> str:
    return f"default-x{scale}"


def resolve_model(name_or_path: str | Path) -> Path:
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    shipped = package_weights_dir() / str(name_or_path)
    if shipped.is_dir():
        return shipped
    hint = ("; x2/x8 models are not shipped yet: train them with `upstep train configs/yonos_chain_small.json "
            "--run-dir runs/chain` and pass --model runs/chain/stage<k>_<name>/model"
            if str(name_or_path) in ("default-x2", "default-x8") else "")
    raise ModelLoadError(f"model {name_or_path!r}: not a folder and not a shipped model "
                         f"(shipped: {', '.join(available_models()) or 'none'}){hint}")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise UpstepError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UpstepError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    return torch.device(device)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 autocast on a CPU with native bf16, float32 elsewhere (``upstep.hardware``)."""
    from upstep.hardware import default_dtype

    if dtype == "auto":
        return default_dtype(device)
    if dtype not in DTYPES:
        raise UpstepError(f"dtype {dtype!r} not supported; use auto or one of {sorted(DTYPES)}")
    if DTYPES[dtype] == torch.float16 and device.type == "cpu":
        raise UpstepError("--dtype float16 is for GPUs (CPUs emulate it slowly); on CPU use auto, "
                          "bfloat16 or float32")
    return DTYPES[dtype]


class Upscaler:
    """A loaded model plus the tiled one-step pipeline, working on PIL images."""

    def __init__(self, model, device: str = "auto", dtype: str = "auto", tile: int | str = "auto",
                 overlap: int = 16, tile_batch: int = 4, channels_last: bool | None = None):
        self.device = pick_device(device)
        self.model = model
        self.scale = model.scale
        self.pipeline = TiledUpscaler(model, self.device, pick_dtype(dtype, self.device), tile, overlap, tile_batch,
                                      channels_last=channels_last)

    def upscale_tensor(self, lr01: torch.Tensor, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                       progress: bool = False) -> torch.Tensor:
        """NCHW (or CHW) RGB in [0, 1] -> upscaled, same layout."""
        return self.pipeline.upscale(lr01, steps=steps, seed=seed, colorfix=colorfix, progress=progress)

    def upscale(self, image: Image.Image, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                progress: bool = False) -> Image.Image:
        """Any PIL image -> upscaled PIL image of the same kind (grayscale stays grayscale,
        alpha is upscaled separately with bicubic and put back, 16-bit stays 16-bit where
        the format allows)."""
        from upstep.io import from_model_rgb, loaded_from_pil, to_model_rgb

        img = loaded_from_pil(image)
        return self.upscale_loaded(img, steps, seed, colorfix, progress)

    def upscale_loaded(self, img, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                       progress: bool = False) -> Image.Image:
        from upstep.degrade.resize import imresize
        from upstep.io import from_model_rgb, to_model_rgb

        rgb = to_model_rgb(img)
        out = self.upscale_tensor(rgb, steps, seed, colorfix, progress)
        alpha = None
        if img.alpha is not None:
            alpha = imresize(img.alpha[None], scale=self.scale)[0].clamp(0, 1)
        return from_model_rgb(out, img, alpha)


def load(name_or_path: str | Path = "default-x4", device: str = "auto", dtype: str = "auto",
         tile: int | str = "auto", overlap: int = 16, channels_last: bool | None = None) -> Upscaler:
    """Load a shipped model by name or a model folder; returns an ``Upscaler``. ``dtype="auto"``
    and ``tile="auto"``: see ``pick_dtype`` and ``upstep.pipeline``."""
    model = load_model(resolve_model(name_or_path))
    return Upscaler(model, device=device, dtype=dtype, tile=tile, overlap=overlap, channels_last=channels_last)
