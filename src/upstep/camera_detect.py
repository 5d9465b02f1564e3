"""Is an LR image camera-like? A tiny classifier behind ``--strength auto`` (issue 29).

What for: default-x4's best strength depends on the kind of input. On real camera LR (clean but
blurred, with a camera's soft HR) it is about 0.75; on Real-ESRGAN-degraded and bicubic LR it is
1 (``docs/results/strength_by_input``). A no-reference noise estimate separates the two only
partly. This network is trained to tell them apart from the LR alone.

The classes are the training degradations of ``upstep.degrade``. Positive: ``camera_blur`` (clean,
blurred, faint noise), half of it saved as JPEG of quality 70-95 (``camera_jpeg``), because camera
photos are usually JPEGs (``docs/results/camera_jpeg``; the first shipped detector,
``runs/camera_detector``, had ``camera_blur`` alone and missed them). Negative: Real-ESRGAN's pipelines and exact bicubic. The data are crops of
the training pool only; no dev or benchmark image is used. Architecture: three 3x3 convolutions
(16, 32, 32 channels, two of stride 2), then the mean and standard deviation of the last features
over the image, then one linear layer to a logit; 14 k parameters. ``camera_probability`` averages
the logit over up to ``MAX_CROPS`` crops of at most ``CROP`` px on a regular grid, so memory stays
bounded for any input size.

Files: ``model.safetensors`` + ``config.json`` (architecture, training settings and log), as every
upstep checkpoint; the shipped one is ``upstep/assets/camera-detector``
(``scripts/train_camera_detector.py`` makes it).
"""
from __future__ import annotations

import functools
import json
import math
import random
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from upstep.errors import UpstepError

CROP = 128        # largest crop side read at inference (LR px)
MAX_CROPS = 16    # at most this many crops per image
POSITIVE = {"camera_blur": 0.5, "camera_jpeg": 0.5}
NEGATIVE = {"realesrgan_ref": 0.4, "realesrgan": 0.3, "bicubic": 0.3}
SHIPPED = Path(__file__).parent / "assets" / "camera-detector"


class CameraDetector(nn.Module):
    """LR RGB in [0, 1] (N, 3, H, W), H and W >= 4 -> logit of "camera-like" per image."""

    def __init__(self, channels: tuple[int, int, int] = (16, 32, 32)):
        super().__init__()
        a, b, c = channels
        self.channels = (a, b, c)
        self.c1 = nn.Conv2d(3, a, 3, padding=1)
        self.c2 = nn.Conv2d(a, b, 3, stride=2, padding=1)
        self.c3 = nn.Conv2d(b, c, 3, stride=2, padding=1)
        self.fc = nn.Linear(2 * c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) * 4
        x = F.relu(self.c3(F.relu(self.c2(F.relu(self.c1(x))))))
        return self.fc(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1))[:, 0]


def grid_crops(lr: torch.Tensor, crop: int = CROP, max_crops: int = MAX_CROPS) -> torch.Tensor:
    """Up to ``max_crops`` crops of side min(crop, H, W) from a (1, 3, H, W) image, on a regular
    grid covering it (one crop when the image is no larger than ``crop``)."""
    h, w = lr.shape[-2:]
    ch, cw = min(crop, h), min(crop, w)
    per_side = max(1, int(math.isqrt(max_crops)))
    ny = min(per_side, math.ceil(h / ch)) if h > ch else 1
    nx = min(per_side, math.ceil(w / cw)) if w > cw else 1
    ys = [round(i * (h - ch) / max(ny - 1, 1)) for i in range(ny)]
    xs = [round(j * (w - cw) / max(nx - 1, 1)) for j in range(nx)]
    return torch.cat([lr[..., y:y + ch, x:x + cw] for y in ys for x in xs])


@torch.no_grad()
def camera_probability(detector: CameraDetector, lr01: torch.Tensor) -> float:
    """P(camera-like) of one LR image ((1, 3, H, W) or (3, H, W), RGB in [0, 1]): the sigmoid of
    the mean logit over ``grid_crops``."""
    x = lr01[None] if lr01.ndim == 3 else lr01
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise ValueError(f"camera_probability wants one RGB image (1, 3, H, W), got {tuple(lr01.shape)}")
    if min(x.shape[-2:]) < 4:
        raise ValueError(f"camera_probability: the image {tuple(x.shape[-2:])} is smaller than 4 px")
    crops = grid_crops(x).float().cpu()
    return float(torch.sigmoid(detector(crops).mean()))


def save_detector(detector: CameraDetector, folder: str | Path, info: dict) -> None:
    from safetensors.torch import save_file

    from upstep.atomic import atomic_write

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in detector.state_dict().items()}
    atomic_write(folder / "model.safetensors", lambda p: save_file(state, str(p)))
    cfg = {"kind": "camera_detector", "channels": list(detector.channels), "info": info}
    atomic_write(folder / "config.json", lambda p: Path(p).write_text(json.dumps(cfg, indent=1) + "\n"))


def load_detector(folder: str | Path | None = None) -> CameraDetector:
    """The detector in ``folder`` (default: the shipped one); safetensors only, never a pickle."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder else SHIPPED
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.is_file() or not weights.is_file():
        raise UpstepError(f"{folder}: not a camera detector (needs config.json and model.safetensors)")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("kind") != "camera_detector":
        raise UpstepError(f"{cfg_path}: kind is {cfg.get('kind')!r}, not 'camera_detector'")
    det = CameraDetector(tuple(cfg["channels"]))
    det.load_state_dict(load_file(str(weights)))
    return det.eval()


@functools.lru_cache(maxsize=1)
def shipped_detector() -> CameraDetector:
    """The detector shipped in the package (loaded once)."""
    return load_detector(SHIPPED)


# ---- training ------------------------------------------------------------------------------
def training_crops(paths: list[Path], images: int, per_image: int, size: int, seed: int) -> torch.Tensor:
    """``per_image`` random ``size``² HR crops from each of the first ``images`` of ``paths``
    (shuffled with ``seed``) whose shorter side is at least ``size``."""
    from upstep.io import read_image, to_model_rgb

    rng = random.Random(seed)
    paths = sorted(paths)
    rng.shuffle(paths)
    crops = []
    for p in paths[:images]:
        x = to_model_rgb(read_image(p))
        h, w = x.shape[-2:]
        if min(h, w) < size:
            continue
        for _ in range(per_image):
            y0, x0 = rng.randrange(h - size + 1), rng.randrange(w - size + 1)
            crops.append(x[:, y0:y0 + size, x0:x0 + size])
    if not crops:
        raise UpstepError(f"no training image has a side of {size} px or more")
    return torch.stack(crops)


def train_detector(hr: torch.Tensor, scale: int = 4, steps: int = 6000, batch: int = 64, lr: float = 3e-3,
                   val: int = 300, seed: int = 0, log=None, positive=POSITIVE) -> tuple[CameraDetector, dict]:
    """Train on ``hr`` crops (N, 3, S, S): each crop once as ``positive`` LR (a pipeline name or
    mixture; default POSITIVE) and once as NEGATIVE LR
    (``upstep.degrade``, one generator seeded ``seed``); ``val`` random examples are held apart.
    Each step reads a random batch at a random crop side of 32, 48 or 64 LR px (one-cycle learning
    rate). Returns the detector and {"val_accuracy", "val_examples", "train_examples"}. The held-apart
    examples may share their crop (with the other label) or their image with training ones, so
    ``val_accuracy`` is optimistic: a check that training worked, not a measure of transfer."""
    from upstep.degrade import degrade

    g = torch.Generator().manual_seed(seed)
    pos = torch.cat([degrade(hr[i:i + 64], scale, positive, g) for i in range(0, len(hr), 64)])
    neg = torch.cat([degrade(hr[i:i + 64], scale, NEGATIVE, g) for i in range(0, len(hr), 64)])
    x, y = torch.cat([pos, neg]), torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))])
    order = torch.randperm(len(x), generator=g)
    held, train = order[:val], order[val:]
    torch.manual_seed(seed)
    det = CameraDetector()
    opt = torch.optim.Adam(det.parameters(), lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    side = x.shape[-1]
    for step in range(steps):
        b = train[torch.randint(len(train), (batch,), generator=g)]
        s = [32, 48, 64][int(torch.randint(3, (1,), generator=g))]
        s = min(s, side)
        oy, ox = (int(torch.randint(side - s + 1, (1,), generator=g)) for _ in range(2))
        loss = F.binary_cross_entropy_with_logits(det(x[b][..., oy:oy + s, ox:ox + s]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and (step % 500 == 0 or step == steps - 1):
            log({"step": step, "loss": float(loss.detach())})
    det.eval()
    with torch.no_grad():
        acc = float(((det(x[held]) > 0).float() == y[held]).float().mean())
    return det, {"val_accuracy": acc, "val_examples": int(val), "train_examples": int(len(train))}


__all__ = ["CameraDetector", "camera_probability", "grid_crops", "load_detector", "save_detector", "shipped_detector",
           "train_detector", "training_crops", "POSITIVE", "NEGATIVE", "SHIPPED"]
