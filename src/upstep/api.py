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


SHIPPED_SCALES = (2, 4, 8)
_TRAIN_HINT = ("train one with `upstep train configs/yonos_chain_small.json --run-dir runs/chain` "
               "(x2 -> x4 -> x8) and pass --model runs/chain/stage<k>_<name>/model")


def shipped_models() -> list[dict]:
    """``{"name", "scale", "recipe"}`` of every shipped model (read from its config.json)."""
    import json

    out = []
    for name in available_models():
        cfg = json.loads((package_weights_dir() / name / "config.json").read_text())
        info = cfg.get("info", {})
        recipe = info.get("recipe") or info.get("train_config", {}).get("recipe", "")
        out.append({"name": name, "scale": cfg.get("scale"), "recipe": recipe})
    return out


def default_model_for(scale: int) -> str:
    """The shipped model that ``--scale`` / ``load(scale=...)`` picks: ``default-x<scale>``."""
    name = f"default-x{scale}"
    if name in available_models():
        return name
    shipped = ", ".join(f"{m['name']} (x{m['scale']})" for m in shipped_models()) or "none"
    raise ModelLoadError(f"no x{scale} model ships with this version of upstep (shipped: {shipped}); {_TRAIN_HINT}")


def resolve_model(name_or_path: str | Path) -> Path:
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    shipped = package_weights_dir() / str(name_or_path)
    if shipped.is_dir():
        return shipped
    hint = f"; {_TRAIN_HINT}" if str(name_or_path) in [f"default-x{s}" for s in SHIPPED_SCALES] else ""
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


BACKENDS = ("auto", "torch", "onnxruntime")


def pick_backend(backend: str, model, device: torch.device, dtype: torch.dtype) -> str:
    """``"auto"``: torch. ONNX Runtime (``upstep.onnx_backend``: CPU, float32, models without
    self-attention) is an option, not the default: once freed buffers are reused
    (``upstep.hardware.reuse_freed_memory``) it measured slower than torch for the former fast-x4
    (``docs/results/bench_fast_x4``)."""
    from upstep import onnx_backend

    if backend not in BACKENDS:
        raise UpstepError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnxruntime" and not onnx_backend.available(model, device, dtype):
        why = ("onnxruntime is not installed (pip install onnxruntime onnx; scripts/setup.sh does)"
               if not onnx_backend.installed() else
               "it runs float32 on the CPU only, for v-diffusion models with a text-free U-Net without "
               "self-attention (mid_attention false, e.g. default-x4)")
        raise UpstepError(f"backend onnxruntime: {why}")
    return "torch" if backend == "auto" else backend


class Upscaler:
    """A loaded model plus the tiled one-step pipeline, working on PIL images."""

    def __init__(self, model, device: str = "auto", dtype: str = "auto", tile: int | str = "auto",
                 overlap: int = 16, tile_batch: int = 4, channels_last: bool | None = None, backend: str = "auto"):
        self.device = pick_device(device)
        self.model = model
        self.scale = model.scale
        run_dtype = pick_dtype(dtype, self.device)
        self.backend = pick_backend(backend, model, self.device, run_dtype)
        self.pipeline = TiledUpscaler(model, self.device, run_dtype, tile, overlap, tile_batch,
                                      channels_last=channels_last, backend=self.backend)

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


def load(name_or_path: str | Path | None = None, device: str = "auto", dtype: str = "auto",
         tile: int | str = "auto", overlap: int = 16, channels_last: bool | None = None,
         scale: int | None = None, backend: str = "auto") -> Upscaler:
    """Load a shipped model by name or a model folder; returns an ``Upscaler``. Without a name,
    the shipped model for ``scale`` (default 4: ``default-x4``). ``dtype="auto"`` and
    ``tile="auto"``: see ``pick_dtype`` and ``upstep.pipeline``; ``backend``: see ``pick_backend``."""
    if name_or_path is None:
        name_or_path = default_model_for(scale or 4)
    model = load_model(resolve_model(name_or_path))
    if scale is not None and model.scale != scale:
        raise UpstepError(f"model {name_or_path} upscales x{model.scale}, not x{scale}")
    return Upscaler(model, device=device, dtype=dtype, tile=tile, overlap=overlap, channels_last=channels_last,
                    backend=backend)
