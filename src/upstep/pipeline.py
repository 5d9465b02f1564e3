"""One-step SR inference on images of any size: tiling, blending, colour fix, batching.

Tensor convention here: ``lr`` is NCHW float in [0, 1] at LR size; the model works in
[-1, 1]. Output is [0, 1] at ``scale`` x the input size.

Tiling: the LR image is first upscaled bicubically to the output size as a whole (cheap,
and the same for tiled and untiled runs). That image is cut into overlapping HR tiles; each
tile goes through encoder -> U-Net -> decoder on its own and the results are blended with
weights that ramp linearly across the overlap (1 inside, near 0 at a tile edge that lies
inside the image). The network's memory is therefore set by the tile size, not the image
size (buffers of the output's own size remain). The starting noise is drawn once for the
whole image (one latent per output position) and sliced per tile, so tiled and untiled
runs see the same noise everywhere. What still differs between them near tile edges is the
network's context (receptive field, GroupNorm statistics), which the overlap absorbs.

Tile size: ``tile="auto"`` (the default) runs the whole image as one tile when its output fits
``auto_tile_px`` pixels (the network's memory budget), else the fewest tiles of at most that
size, balanced so no tile is a thin sliver; an integer ``tile`` (LR pixels) fixes it. Tiles run
``tile_batch`` at a time only while the batch stays within the same budget.
"""
from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F
from tqdm import tqdm

from upstep.colorfix import COLORFIX
from upstep.errors import UpstepError
from upstep.hardware import reuse_freed_memory

# Output pixels per network call when tiling is automatic: 1024² (a 256² input at x4) needed about
# 350 MB of working memory for default-x4 in float32 (the 2026-11-24 bench); the memory rows of
# `upstep bench` measure it for the current default path.
AUTO_TILE_PX = 1024 * 1024


def _positions(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    pos = list(range(0, length - tile, stride))
    pos.append(length - tile)
    return sorted(set(pos))


def _balanced(length: int, max_tile: int, overlap: int, m: int) -> int:
    """The tile length (a multiple of ``m``) that covers ``length`` with the fewest tiles of at
    most ``max_tile``, all of about the same size."""
    if length <= max_tile:
        return length
    n = math.ceil((length - overlap) / (max_tile - overlap))
    return min(length, math.ceil(((length - overlap) / n + overlap) / m) * m)


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> torch.Tensor:
    w = torch.ones(n)
    if overlap > 0:
        r = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if not at_start:
            w[:overlap] = torch.minimum(w[:overlap], r)
        if not at_end:
            w[n - overlap:] = torch.minimum(w[n - overlap:], r.flip(0))
    return w


def _whole(v, what: str) -> int:
    """``v`` as an int when it is a whole number (an int, a float like 128.0, or such a string)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if isinstance(v, bool) or not math.isfinite(f) or f != int(f):
        raise UpstepError(f"{what}, got {v!r}")
    return int(f)


def check_tiling(tile, overlap) -> tuple[int | str, int]:
    """``tile`` ("auto" or a positive whole number of LR pixels) and ``overlap`` (0 or more), checked."""
    if tile != "auto":
        tile = _whole(tile, "tile must be a whole number of LR pixels or 'auto'")
        if tile < 1:
            raise UpstepError(f"tile must be a positive number of LR pixels (or 'auto'), got {tile}")
    overlap = _whole(overlap, "overlap must be a whole number of LR pixels")
    if overlap < 0:
        raise UpstepError(f"overlap must be 0 or more LR pixels, got {overlap}")
    return tile, overlap


class TiledUpscaler:
    """Runs an SR model (``scale``, ``pixel_multiple``, ``upsample_lr``, ``upscale_upsampled``).

    ``tile`` and ``overlap`` are in LR pixels (HR tiles are ``scale`` times larger).
    """

    def __init__(self, model, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 tile: int | str = "auto", overlap: int = 16, tile_batch: int = 4,
                 channels_last: bool | None = None, auto_tile_px: int = AUTO_TILE_PX, backend: str = "torch"):
        tile, overlap = check_tiling(tile, overlap)   # before any export or copy of the model
        self.device = torch.device(device)
        self.backend = backend
        if self.device.type == "cpu":  # the activation buffers of one call are reused by the next
            reuse_freed_memory()
        if backend == "onnxruntime":  # the networks in ORT (upstep.onnx_backend); it takes NCHW arrays
            from upstep.onnx_backend import onnx_model

            model, channels_last = onnx_model(model), False
        elif backend != "torch":
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
        # channels_last (NHWC) lets oneDNN pick its faster CPU convolutions (`upstep bench`: float32 vs float32, NCHW)
        self.channels_last = self.device.type == "cpu" if channels_last is None else channels_last
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model = model.to(device=device, memory_format=fmt).eval()
        self.dtype = dtype
        self.scale = model.scale
        m = model.pixel_multiple  # HR tiles must be multiples of this
        self.multiple = m
        self.auto_tile_px = auto_tile_px
        if tile == "auto":
            self.tile_hr = None
            side = max(m, math.isqrt(auto_tile_px) // m * m)
            self.overlap_hr = min(overlap * self.scale, side // 2) // m * m
        else:
            self.tile_hr = max(m, (int(tile) * self.scale) // m * m)
            self.overlap_hr = min(overlap * self.scale, self.tile_hr // 2) // m * m
        self.tile_batch = tile_batch

    def tile_shape(self, H: int, W: int) -> tuple[int, int]:
        """HR tile height and width for a (padded) HR image of H x W."""
        if self.tile_hr is not None:
            return min(self.tile_hr, H), min(self.tile_hr, W)
        budget, m, ov = self.auto_tile_px, self.multiple, self.overlap_hr
        if H * W <= budget:
            return H, W
        side = max(m, math.isqrt(budget) // m * m)
        max_h = max_w = side
        if H <= side:  # a wide strip: whole height, as wide as the budget allows
            max_h, max_w = H, max(side, budget // H // m * m)
        elif W <= side:
            max_h, max_w = max(side, budget // W // m * m), W
        return _balanced(H, max_h, ov, m), _balanced(W, max_w, ov, m)

    def _run(self, up_tiles: torch.Tensor, noise: torch.Tensor, steps: int) -> torch.Tensor:
        x = up_tiles.to(self.device) * 2 - 1
        noise = noise.to(self.device)
        if self.channels_last:  # the noise too: the U-Net concatenates it with the LR latent
            x = x.contiguous(memory_format=torch.channels_last)
            noise = noise.contiguous(memory_format=torch.channels_last)
        autocast = self.dtype in (torch.bfloat16, torch.float16)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=autocast):
            y = self.model.upscale_upsampled(x, steps=steps, noise=noise)
        return y.float().clamp_(-1, 1).add_(1).mul_(0.5).cpu()  # y is the model's fresh output: in place

    def _accumulate(self, out: torch.Tensor, weight: torch.Tensor | None, corners: list[tuple[int, int]],
                    tiles: torch.Tensor, H: int, W: int) -> None:
        """Add each HR tile times its blending ramp into ``out`` (C, H, W) and, unless None, the
        ramps into ``weight`` (1, 1, H, W); the ramps fall to the tile edges that overlap others."""
        ov = self.overlap_hr
        th, tw = tiles.shape[-2:]
        for (y, x), t in zip(corners, tiles):
            wt = _ramp(th, ov, y == 0, y + th >= H)[:, None] * _ramp(tw, ov, x == 0, x + tw >= W)[None, :]
            out[:, y:y + th, x:x + tw] += t * wt
            if weight is not None:
                weight[0, 0, y:y + th, x:x + tw] += wt

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, steps: int | None = None, seed: int = 0, colorfix: str = "none",
                progress: bool = False) -> torch.Tensor:
        if lr.ndim == 3:
            return self.upscale(lr[None], steps, seed, colorfix, progress)[0]
        if colorfix not in COLORFIX:
            raise UpstepError(f"colorfix {colorfix!r} not known; use one of {', '.join(COLORFIX)}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise UpstepError(f"seed must be a whole number, got {seed!r}")
        n, c, h, w = lr.shape
        s, m = self.scale, self.multiple
        up = (self.model.upsample_lr(lr.float() * 2 - 1) + 1) / 2  # bicubic, whole image, in [0, 1]
        H0, W0 = h * s, w * s
        ph, pw = (-H0) % m, (-W0) % m
        if ph or pw:  # pad to the model's multiple; reflect needs pad < size
            mode = "reflect" if ph < H0 and pw < W0 else "replicate"
            up = F.pad(up, (0, pw, 0, ph), mode=mode)
        H, W = up.shape[-2:]
        f = self.model.autoencoder.factor
        g = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(n, self.model.unet.latent_channels, H // f, W // f, generator=g)

        ov = self.overlap_hr
        th, tw = self.tile_shape(H, W)
        ys, xs = _positions(H, th, max(m, th - ov)), _positions(W, tw, max(m, tw - ov))
        batch = self.tile_batch if self.tile_hr is not None else max(1, min(self.tile_batch,
                                                                          self.auto_tile_px // (th * tw)))
        jobs = [(y, x) for y in ys for x in xs]
        blend = len(jobs) > 1  # else one tile covers the image: its output is the image
        out = torch.zeros(n, c, H, W) if blend else torch.empty(n, c, H, W)
        weight = torch.zeros(1, 1, H, W) if blend else None
        # progress: True for a tqdm bar, or a callable told (tiles done, tiles in all) after each batch
        report = progress if callable(progress) else None
        bar = tqdm(total=len(jobs) * n, desc="tiles", disable=report is not None or not progress or len(jobs) * n < 2)
        for b in range(n):
            for i in range(0, len(jobs), batch):
                chunk = jobs[i:i + batch]
                up_t = torch.stack([up[b, :, y:y + th, x:x + tw] for y, x in chunk])
                nz = torch.stack([noise[b, :, y // f:(y + th) // f, x // f:(x + tw) // f] for y, x in chunk])
                hr_t = self._run(up_t, nz, steps)
                if blend:
                    self._accumulate(out[b], weight if b == 0 else None, chunk, hr_t, H, W)
                else:
                    out[b] = hr_t[0]
                bar.update(len(chunk))
                if report:
                    report(b * len(jobs) + i + len(chunk), len(jobs) * n)
        bar.close()
        if blend:
            out.div_(weight)   # in place: no second full-size output buffer
        out = out[..., :H0, :W0]
        fix = COLORFIX[colorfix]
        if fix is not None:
            out = fix(out, up[..., :H0, :W0])
        return out.clamp_(0, 1)
