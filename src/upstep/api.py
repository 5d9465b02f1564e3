"""Python API: ``upstep.load(name_or_path).upscale(pil_image)``.

``name_or_path`` is a shipped model name (``upstep.available_models()``: e.g. "default-x4")
or a folder with ``config.json`` + ``model.safetensors``. Nothing is ever downloaded.

Any output size (``plan_size``): a factor from 1 to 8, or a target width and/or height, runs the
smallest shipped scale at or above the factor, then ``upscale(..., out_size=(w, h))`` resizes the
model's output down with ``OUTPUT_FILTER`` (measured in ``docs/results/scale_x3``).
Strength (``upscale(..., strength=S)``): ``upstep.strength``.
"""
from __future__ import annotations

import functools
import math
import numbers
import threading
from dataclasses import dataclass
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


MAX_FACTOR = 8.0


@dataclass(frozen=True)
class SizePlan:
    """What to run for one input: the output ``size`` (w, h), the upscale ``factor`` it asks for
    (the larger of the two axes' ratios), and ``model_scale``, the smallest scale at or above it."""

    size: tuple[int, int]
    factor: float
    model_scale: int

    @property
    def model(self) -> str:
        """The shipped model of ``model_scale`` (``default-x<s>``)."""
        return f"default-x{self.model_scale}"


def default_scales() -> tuple[int, ...]:
    """The scales of the ``default-x<s>`` models that ship in this installation."""
    return tuple(s for s in SHIPPED_SCALES if f"default-x{s}" in available_models())


def plan_size(in_size: tuple[int, int], scale: float | None = None, width: int | None = None,
              height: int | None = None, model_scales: tuple[int, ...] | None = None) -> SizePlan:
    """Output size and model scale for an input of ``in_size`` = (w, h): either ``scale`` (any
    factor from 1 to 8; default 4) or ``width`` and/or ``height`` in pixels (one of them keeps the
    aspect ratio, both set it). ``model_scales``: the scales to choose from (default: those of the
    shipped ``default-x<s>`` models, ``default_scales``; e.g. one given model's)."""
    model_scales = model_scales or default_scales() or SHIPPED_SCALES
    w, h = in_size
    if scale is not None and (width is not None or height is not None):
        raise UpstepError("give either a scale or a target width/height, not both")
    for name, v in (("width", width), ("height", height)):
        if v is not None and v < 1:
            raise UpstepError(f"{name} must be a positive number of pixels, got {v}")
    if width is None and height is None:
        s = 4.0 if scale is None else float(scale)
        if not (math.isfinite(s) and 1.0 <= s <= MAX_FACTOR):
            raise UpstepError(f"scale must be a factor from 1 to {MAX_FACTOR:g}, got {scale}")
        size = (max(1, math.floor(w * s + 0.5)), max(1, math.floor(h * s + 0.5)))
    else:
        size = (width if width is not None else max(1, math.floor(w * height / h + 0.5)),
                height if height is not None else max(1, math.floor(h * width / w + 0.5)))
    factor = max(size[0] / w, size[1] / h)
    if factor < 1:
        raise UpstepError(f"{size[0]}x{size[1]} is smaller than the {w}x{h} input; upstep upscales "
                          f"(a factor from 1 to {MAX_FACTOR:g})")
    fits = [m for m in sorted(model_scales) if m >= factor - 1e-9]
    if not fits:
        raise UpstepError(f"{size[0]}x{size[1]} from a {w}x{h} input is x{factor:.3g}; the largest model here "
                          f"upscales x{max(model_scales)}: ask for a smaller size")
    return SizePlan(size, factor, fits[0])


# Downsampling of the model's output to the asked size: MATLAB bicubic with its antialiasing (the
# kernel stretched by the factor). Measured at x3 (docs/results/scale_x3, Set14 and BSD100), every
# filter beats bicubic x3 in both metrics; they trade one for the other and bicubic sits between:
# Lanczos and area about 0.01 better in LPIPS and 0.03-0.07 dB worse in PSNR-Y, bilinear-aa 0.11-0.15
# dB better in PSNR-Y and 0.013-0.017 worse in LPIPS.
OUTPUT_FILTER = "bicubic"


def resize_output(rgb: torch.Tensor, size: tuple[int, int], method: str = OUTPUT_FILTER) -> torch.Tensor:
    """NCHW (or CHW) [0, 1] -> ``size`` = (w, h), antialiased when shrinking. ``method``: "bicubic"
    (MATLAB imresize), "lanczos" (Pillow, per channel in float), "area" or "bilinear-aa"
    (torch, antialias=True)."""
    import torch.nn.functional as F

    from upstep.degrade.resize import imresize

    w, h = size
    if tuple(rgb.shape[-2:]) == (h, w):
        return rgb
    if method == "bicubic":
        out = imresize(rgb, size=(h, w))
    elif method == "area":
        out = F.interpolate(rgb[None] if rgb.ndim == 3 else rgb, size=(h, w), mode="area")
    elif method == "bilinear-aa":
        out = F.interpolate(rgb[None] if rgb.ndim == 3 else rgb, size=(h, w), mode="bilinear",
                            antialias=True, align_corners=False)
    elif method == "lanczos":
        import numpy as np

        flat = rgb.reshape(-1, *rgb.shape[-2:]).float().numpy()
        out = torch.from_numpy(np.stack([np.asarray(Image.fromarray(c, mode="F").resize((w, h), Image.LANCZOS))
                                         for c in flat])).reshape(*rgb.shape[:-2], h, w)
    else:
        raise UpstepError(f"unknown output filter {method!r}; use bicubic, lanczos, area or bilinear-aa")
    if out.ndim != rgb.ndim:
        out = out[0]
    return out.clamp(0, 1)


def resolve_model(name_or_path: str | Path) -> Path:
    """The model folder of a shipped name, a model folder, or an `upstep train` run folder (its ``model/``)."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        run_export = p / "model"
        if (p / "model.safetensors").is_file():
            return p
        if (run_export / "config.json").is_file():
            return run_export
        if (p / "log.jsonl").is_file():
            raise ModelLoadError(f"{p}: an `upstep train` run folder with no exported model/ yet; "
                                 "resume it with `upstep train` to its last step, which writes model/")
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
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UpstepError("--device mps: Apple MPS is not available here; use --device cpu or auto")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise UpstepError(f"device {device!r} not supported; use auto, cpu, cuda (or cuda:N) or mps")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UpstepError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")
    return dev


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
        if not onnx_backend.installed():
            why = "onnxruntime is not installed (pip install onnxruntime onnx; scripts/setup.sh does)"
        elif device.type != "cpu" or dtype != torch.float32:
            why = (f"it runs float32 on the CPU only (asked: {str(dtype).replace('torch.', '')} on {device.type}); "
                   "use --device cpu --dtype float32")
        else:
            why = ("it runs v-diffusion models whose U-Net has no text conditioning and no self-attention "
                   "(mid_attention false, e.g. default-x4); this model has; use --backend torch")
        raise UpstepError(f"backend onnxruntime: {why}")
    return "torch" if backend == "auto" else backend


class Upscaler:
    """A loaded model plus the tiled one-step pipeline, working on PIL images.

    ``strength`` (0..1, ``upstep.strength``): 1 runs the model's own weights; other values need the
    model's fidelity end (``fidelity.safetensors``, or a shipped model its config names). "auto"
    picks one per image from the LR by the model's rule (``upstep.strength.auto_strength_rule``;
    default-x4 has one); None is "auto" for such a model on the torch backend, else 1. ``out_size`` = (w, h): the model's
    output resized down to that size (``resize_output``); at most the model's scale on each axis."""

    def __init__(self, model, device: str = "auto", dtype: str = "auto", tile: int | str = "auto",
                 overlap: int = 16, tile_batch: int = 4, channels_last: bool | None = None, backend: str = "auto"):
        self.device = pick_device(device)
        self.model = model
        self.scale = model.scale
        run_dtype = pick_dtype(dtype, self.device)
        if backend == "onnxruntime" and dtype == "auto":   # ONNX Runtime runs float32 only
            run_dtype = torch.float32
        self.backend = pick_backend(backend, model, self.device, run_dtype)
        self.pipeline = TiledUpscaler(model, self.device, run_dtype, tile, overlap, tile_batch,
                                      channels_last=channels_last, backend=self.backend)
        self._interp = None  # upstep.strength.NetworkInterpolation, made on the first strength asked
        self.camera_detector = None  # the detector behind strength 'auto'; None: the shipped one
        self.last_strength = None    # the strength the last upscale ran at (None: the weights as they are)
        self._lock = threading.Lock()  # weights at one strength for the whole of a run
        if self.auto_rule is not None and not self.has_strength:   # read now: a broken rule fails at load
            raise ModelLoadError(f"{self.model.folder}: its config declares an auto strength rule but the folder "
                                 "holds no fidelity end (fidelity.safetensors); restore it or ship the model again")

    @property
    def has_strength(self) -> bool:
        """Whether ``strength`` can be asked for: the model folder holds or names its fidelity end."""
        from upstep.strength import fidelity_weights_path

        folder = getattr(self.model, "folder", None)
        return folder is not None and fidelity_weights_path(folder) is not None

    @functools.cached_property
    def auto_rule(self) -> dict | None:
        """The model's rule for strength "auto", or None (``upstep.strength.auto_strength_rule``)."""
        from upstep.strength import auto_strength_rule

        return auto_strength_rule(getattr(self.model, "folder", None))

    def _rule(self) -> dict:
        """The auto rule, or the error for a model without one."""
        if self.auto_rule is None:
            raise UpstepError("strength 'auto' needs a model with an auto rule (default-x4 has one); "
                              "give a number between 0 and 1 instead")
        return self.auto_rule

    def resolve_strength(self, strength, lr01: torch.Tensor) -> float | None:
        """The number ``strength`` stands for on the image ``lr01`` (None: the model's own weights)."""
        from upstep.strength import AUTO, parse_strength, pick_auto_strength

        strength = parse_strength(strength)
        if strength is None:
            if self.auto_rule is None or self.backend != "torch" or (lr01.ndim == 4 and lr01.shape[0] != 1):
                return None          # the model's own weights: no rule, no strength control, or a batch
            strength = AUTO
        if strength != AUTO:
            return strength
        rule = self._rule()
        if self.backend != "torch":
            raise UpstepError("strength 'auto' works with the torch backend only; drop --backend onnxruntime")
        if lr01.ndim == 4 and lr01.shape[0] != 1:
            raise UpstepError("strength 'auto' picks one strength per image; upscale one image at a time")
        s = pick_auto_strength(rule, lr01, self.camera_detector)
        return None if s == 1.0 else s

    def _set_strength(self, strength: float | None) -> None:
        from upstep.strength import AUTO, NetworkInterpolation, parse_strength, read_fidelity_state

        strength = parse_strength(strength)
        if strength == AUTO:
            strength = self._rule()["camera_like"]   # prepare: the end auto may need
        if strength is None:
            if self._interp is not None:
                self._interp.set(1.0)
            return
        if strength == 1.0 and self._interp is None:   # S = 1 is the model's own weights: nothing to load
            return
        if self._interp is None:
            folder = getattr(self.model, "folder", None)
            if folder is None:
                raise UpstepError("strength needs a model loaded from a folder with fidelity.safetensors "
                                  "(upstep.load(name_or_path)); this one was built in memory")
            if self.backend != "torch":
                raise UpstepError("strength works with the torch backend only; drop --backend onnxruntime")
            self._interp = NetworkInterpolation(self.model, read_fidelity_state(self.model, Path(folder)))
        self._interp.set(strength)

    def prepare_strength(self, strength: float | None) -> None:
        """Check ``strength`` and load the fidelity end now, so a model without one is an error
        before any work (``upscale`` does the same on its first call)."""
        with self._lock:
            self._set_strength(strength)

    def output_size(self, in_size: tuple[int, int], out_size: tuple[int, int] | None) -> tuple[int, int]:
        """(w, h) of the result for an input of ``in_size``; checks ``out_size``."""
        w, h = in_size
        if out_size is None:
            return w * self.scale, h * self.scale
        ow, oh = (int(v) for v in out_size)
        if ow < 1 or oh < 1:
            raise UpstepError(f"output size {ow}x{oh}: width and height must be at least 1 pixel")
        if not (ow <= w * self.scale and oh <= h * self.scale):
            raise UpstepError(f"output size {ow}x{oh} is out of reach of this x{self.scale} model for a {w}x{h} "
                              f"input (at most {w * self.scale}x{h * self.scale}); pick a model of a larger scale "
                              "(upstep.api.plan_size)")
        return ow, oh

    def check_steps(self, steps) -> None:
        """``steps``: None (the model's own) or a whole number >= 1 that the model was trained for.
        Checked by the image and video paths; ``upscale_tensor`` does not check, so benchmarks can
        still time (and measure) a one-step model at more steps."""
        from upstep.model import one_step_only

        if steps is None:
            return
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise UpstepError(f"steps must be a whole number of at least 1, got {steps!r}")
        why = one_step_only(getattr(self.model, "info", {}) or {}) if steps > 1 else None
        if why:
            name = getattr(self.model, "folder", None)
            raise UpstepError(f"{Path(name).name if name else 'this model'}: {why}, so {steps} steps would visit "
                              "noise levels it never learned and give a noisy image; leave --steps out (one step)")

    def upscale_tensor(self, lr01: torch.Tensor, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                       progress: bool = False, strength: float | None = None,
                       out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """NCHW (or CHW) RGB in [0, 1] -> upscaled, same layout; ``out_size`` = (w, h)."""
        size = self.output_size((lr01.shape[-1], lr01.shape[-2]), out_size)
        strength = self.resolve_strength(strength, lr01)
        with self._lock:
            self._set_strength(strength)
            out = self.pipeline.upscale(lr01, steps=steps, seed=seed, colorfix=colorfix, progress=progress)
            self.last_strength = strength
        return resize_output(out, size)

    def upscale(self, image: Image.Image | str | Path, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                progress: bool = False, strength: float | None = None,
                out_size: tuple[int, int] | None = None) -> Image.Image:
        """Any PIL image (or an image file's path) -> upscaled PIL image of the same kind (grayscale stays grayscale,
        alpha is upscaled separately with bicubic and put back, 16-bit stays 16-bit where
        the format allows)."""
        from upstep.io import loaded_from_pil, read_image

        if isinstance(image, (str, Path)):
            img = read_image(image)
        elif isinstance(image, Image.Image):
            img = loaded_from_pil(image)
        else:
            raise UpstepError(f"upscale() takes a PIL image or an image file's path, not {type(image).__name__}"
                              + (" (for an array use PIL.Image.fromarray(a) first)" if hasattr(image, "shape") else ""))
        return self.upscale_loaded(img, steps, seed, colorfix, progress, strength=strength, out_size=out_size)

    def upscale_loaded(self, img, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                       progress: bool = False, strength: float | None = None,
                       out_size: tuple[int, int] | None = None) -> Image.Image:
        from upstep.degrade.resize import imresize
        from upstep.io import from_model_rgb, to_model_rgb

        self.check_steps(steps)
        rgb = to_model_rgb(img)
        w, h = self.output_size((rgb.shape[-1], rgb.shape[-2]), out_size)
        out = self.upscale_tensor(rgb, steps, seed, colorfix, progress, strength=strength, out_size=(w, h))
        alpha = None
        if img.alpha is not None:
            alpha = imresize(img.alpha[None], size=(h, w))[0].clamp(0, 1)
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
