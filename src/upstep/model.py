"""An SR diffusion model as one object: autoencoder + denoiser + schedule + how to sample.

Tensor conventions at this boundary: pixels NCHW float in [-1, 1]; ``lr`` is the LR image at
its own size, ``hr`` at ``scale`` times that. The LR image is upscaled with MATLAB-style
bicubic (``upstep.degrade.imresize``) to the HR size and encoded; its latent ``z_l`` is the
condition concatenated to the noisy latent (YONOS-SR §3.1).

``target`` says what the diffusion generates:
* ``"latent"``: z_h itself (the papers' form);
* ``"residual"``: z_h - z_l, added back after sampling (measured better at CPU scale, DESIGN.md).

A saved model is a folder with ``config.json`` and ``model.safetensors`` (never a pickle).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from upstep.atomic import atomic_write
from upstep.degrade.resize import imresize
from upstep.diffusion.ddim import ddim_sample
from upstep.diffusion.schedule import CosineSchedule
from upstep.nn.autoencoders import Autoencoder, PixelUnshuffleAutoencoder, build_autoencoder
from upstep.nn.degrid import degrid_latent
from upstep.nn.unet import SRUNet, build_unet

FORMAT_VERSION = 1


class LatentSRModel(nn.Module):
    """What every latent SR model shares (the v-diffusion model here, ResShift in
    ``diffusion/resshift_model.py``): an autoencoder, an SR U-Net on concat(latent, LR latent),
    an integer ``scale``. Subclasses implement ``upscale_upsampled``."""

    autoencoder: Autoencoder
    unet: SRUNet
    scale: int

    @property
    def pixel_multiple(self) -> int:
        """HR-size tiles must have H and W multiples of this."""
        return self.autoencoder.factor * self.unet.multiple

    def upsample_lr(self, lr: torch.Tensor, hr_size: tuple[int, int] | None = None) -> torch.Tensor:
        """MATLAB-bicubic upsampling of the LR image (pixels in [-1, 1]) to the HR size: the
        conditioning image. Bicubic overshoots at edges; the result is clamped back to [-1, 1]
        here, the one place training, validation and inference all upsample through."""
        size = hr_size or (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        return imresize(lr, size=size).clamp(-1, 1)

    def encode_cond(self, lr_up: torch.Tensor) -> torch.Tensor:
        """The latent of the bicubic-upsampled LR image (z_l in YONOS, y in ResShift)."""
        return self.autoencoder.encode(lr_up)

    def latent_shape(self, lr_up: torch.Tensor) -> tuple[int, ...]:
        f = self.autoencoder.factor
        n, _, h, w = lr_up.shape
        return (n, self.unet.latent_channels, h // f, w // f)

    @torch.no_grad()
    def upscale_tensor(self, lr: torch.Tensor, steps: int | None = None,
                       noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """LR [-1,1] -> HR [-1,1] for a whole (already padded) tensor; tiling lives in pipeline."""
        return self.upscale_upsampled(self.upsample_lr(lr), steps, noise, generator)


class SRDiffusionModel(LatentSRModel):
    """Latent v-diffusion SR (standard training, YONOS-SR distillation, decoder fine-tuning)."""

    kind = "vdiffusion"

    def __init__(self, autoencoder: Autoencoder, unet: SRUNet, scale: int,
                 target: str = "residual", schedule: CosineSchedule | None = None,
                 default_steps: int = 1, degrid_sigma: float = 0.0):
        super().__init__()
        if target not in ("residual", "latent"):
            raise ValueError(f"target must be 'residual' or 'latent', got {target!r}")
        if unet.latent_channels != autoencoder.latent_channels:
            from upstep.errors import ConfigError

            raise ConfigError(f"model.unet.latent_channels is {unet.latent_channels} but the "
                              f"{autoencoder.config()['kind']} autoencoder has {autoencoder.latent_channels} "
                              "latent channels; make them equal")
        self.autoencoder = autoencoder
        self.unet = unet
        self.scale = int(scale)
        self.target = target
        self.schedule = schedule or CosineSchedule()
        self.default_steps = default_steps
        self.degrid_sigma = 0.0
        self.set_degrid(degrid_sigma)

    def set_degrid(self, sigma: float) -> None:
        """Pass the predicted residual through the grid notch (``from_target``); 0 turns it off."""
        if sigma and (self.target != "residual" or not isinstance(self.autoencoder, PixelUnshuffleAutoencoder)):
            raise ValueError("degrid_sigma needs target 'residual' and a pixel-unshuffle latent")
        self.degrid_sigma = float(sigma)

    # ---- the pieces recipes use --------------------------------------------------------
    def to_target(self, z_h: torch.Tensor, z_l: torch.Tensor) -> torch.Tensor:
        return z_h - z_l if self.target == "residual" else z_h

    def from_target(self, z0: torch.Tensor, z_l: torch.Tensor) -> torch.Tensor:
        """The HR latent. With ``degrid_sigma`` > 0 the predicted residual first goes through the
        fixed notch at the 4x4 grid frequencies (``upstep.nn.degrid``): a 4x4-periodic grain in
        the U-Net's output never reaches the image, and gradients never ask for one."""
        if self.target != "residual":
            return z0
        if self.degrid_sigma:
            z0 = degrid_latent(z0, self.autoencoder.factor, self.degrid_sigma)
        return z0 + z_l

    def predict_v(self, z_t: torch.Tensor, z_l: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(z_t, z_l, t)

    def predict_z0(self, z_t: torch.Tensor, z_l: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.schedule.z0_from_v(z_t, self.predict_v(z_t, z_l, t), t)

    # ---- sampling ----------------------------------------------------------------------
    @torch.no_grad()
    def sample_latent(self, z_l: torch.Tensor, noise: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """DDIM from pure noise at t = 1; returns the HR latent (target added back)."""
        steps = steps or self.default_steps
        z0 = ddim_sample(lambda z, t: self.predict_v(z, z_l, t), noise, steps, self.schedule)
        return self.from_target(z0, z_l)

    @torch.no_grad()
    def upscale_upsampled(self, lr_up: torch.Tensor, steps: int | None = None,
                          noise: torch.Tensor | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """Same as ``upscale_tensor`` for an LR image already bicubically upscaled to HR size."""
        z_l = self.encode_cond(lr_up)
        if noise is None:
            noise = torch.randn(self.latent_shape(lr_up), generator=generator).to(lr_up.device, z_l.dtype)
        z_h = self.sample_latent(z_l, noise, steps)
        return self.autoencoder.decode(z_h)

    def config(self) -> dict:
        return {"kind": self.kind, "format_version": FORMAT_VERSION, "scale": self.scale,
                "target": self.target, "default_steps": self.default_steps,
                **({"degrid_sigma": self.degrid_sigma} if self.degrid_sigma else {}),
                "schedule": {"name": "cosine", "omega_max": self.schedule.omega_max},
                "autoencoder": self.autoencoder.config(), "unet": self.unet.config()}

    @classmethod
    def from_config(cls, cfg: dict) -> "SRDiffusionModel":
        return cls(build_autoencoder(cfg["autoencoder"]), build_unet(cfg["unet"]), cfg["scale"],
                   target=cfg.get("target", "residual"),
                   schedule=CosineSchedule(omega_max=cfg.get("schedule", {}).get("omega_max", 1000.0)),
                   default_steps=cfg.get("default_steps", 1), degrid_sigma=cfg.get("degrid_sigma", 0.0))


# ---- serialisation: safetensors + JSON, written atomically ------------------------------
def _atomic_write_bytes(path: Path, write) -> None:
    atomic_write(path, write)


def save_json(obj: dict, path: str | Path) -> None:
    def write(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
    _atomic_write_bytes(Path(path), write)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None) -> None:
    """``metadata`` is stored as one key, ``upstep``, holding sorted JSON: safetensors writes
    several metadata keys in a hash-map order that changes from run to run, which would make the
    same weights a different file (and break the shipped files' SHA-256 pins)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    packed = {"upstep": json.dumps(metadata, sort_keys=True)} if metadata else None
    _atomic_write_bytes(Path(path), lambda tmp: save_file(tensors, tmp, metadata=packed))


def save_model(model: nn.Module, folder: str | Path, dtype: torch.dtype | None = None,
               extra: dict | None = None) -> Path:
    folder = Path(folder)
    state = model.state_dict()
    if dtype is not None:
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    save_tensors(state, folder / "model.safetensors")
    cfg = model.config()
    if extra:
        cfg["info"] = extra
    save_json(cfg, folder / "config.json")
    return folder


def one_step_only(info: dict) -> str | None:
    """Why a model (its config's ``info``) can be sampled in one step only, or None: training that
    never saw a time t < 1 leaves the U-Net's output there undefined, so a DDIM run of several steps,
    which visits such times, ends in noise."""
    tc = info.get("train_config") or {}
    recipe = tc.get("recipe") or info.get("recipe")   # models exported before train_config was kept
    if recipe == "perceptual" and (tc.get("perceptual") or {}).get("train_unet", True):
        return "its U-Net was fine-tuned at t = 1 only (recipe perceptual)"
    if recipe == "standard" and float((tc.get("train") or {}).get("p_terminal", 0.0)) >= 1.0:
        return "it was trained at t = 1 only (train.p_terminal = 1)"
    return None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    from upstep.errors import ModelLoadError
    from upstep.registry import MODEL_KINDS, model_class

    folder = Path(folder)
    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ModelLoadError(f"{folder}: missing {p.name}; a model folder holds config.json "
                                 "and model.safetensors (as written by `upstep train`)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"{cfg_path}: not valid JSON ({e})") from e
    kind = cfg.get("kind")
    cls = model_class(kind)
    if cls is None:
        raise ModelLoadError(f"{cfg_path}: unknown model kind {kind!r} (known: {sorted(MODEL_KINDS)})")
    model = cls.from_config(cfg)
    try:
        state = load_file(str(w_path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelLoadError(f"{w_path}: cannot read safetensors file ({e})") from e
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{w_path}: weights do not match config.json "
                             f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.info = cfg.get("info", {})
    model.folder = folder  # where optional companions live (``upstep.strength``: fidelity.safetensors)
    return model.to(device).eval()
