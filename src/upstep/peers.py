"""Super-resolution baselines ("peers") that evaluations compare against.

Every peer takes and returns NCHW float RGB in [0, 1] on the CPU (a peer built with a
``device`` moves the work there and the result back). Available peers:

* ``bicubic`` -- MATLAB-convention bicubic (:func:`upstep.degrade.resize.imresize`),
  always available, any integer scale.
* ``realesr-general-x4v3`` -- Real-ESRGAN's small SRVGGNetCompact (x4), from
  ``baselines/realesr_general_x4v3.safetensors``. Other ``baselines/realesr_*.safetensors``
  files of the same architecture are picked up too (name = stem with ``_`` -> ``-``).
* ``realesrgan-x4plus`` -- Real-ESRGAN RRDBNet (basicsr key names), from
  ``baselines/realesrgan_x4plus*.safetensors`` (and ``realesrgan_x2plus*`` for x2)
  whenever such a file appears.
* ``fsrcnn`` / ``espcn`` / ``lapsrn`` -- OpenCV ``dnn_superres`` TensorFlow graphs from
  ``baselines/opencv_dnn_superres/{FSRCNN,ESPCN,LapSRN}_x{s}.pb``.

The weights folder is :func:`upstep.paths.weights_root` (``UPSTEP_WEIGHTS`` overrides) or
the ``weights_dir`` argument. Nothing is downloaded; weights are read with safetensors only
(never pickle). Absent files are reported by :func:`unavailable_peers` and, when a peer is
asked for by name, by :class:`upstep.errors.ModelLoadError` naming the missing file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from upstep.degrade.resize import imresize
from upstep.errors import ModelLoadError
from upstep.paths import weights_root

BASELINES = "baselines"
OPENCV_DIR = "opencv_dnn_superres"


# --------------------------------------------------------------------------- base class


class Peer:
    """A baseline upscaler. Subclasses implement :meth:`_run` on a validated NCHW batch."""

    name: str = "peer"
    scales: tuple[int, ...] = ()

    def supports(self, scale: int) -> bool:
        return int(scale) in self.scales

    def upscale(self, lr: torch.Tensor, scale: int) -> torch.Tensor:
        """NCHW (or CHW) float RGB in [0, 1] -> the same layout ``scale`` times larger, CPU."""
        if not self.supports(scale):
            raise ValueError(f"peer {self.name!r} does not upscale x{scale} (supports x{self.scales})")
        squeeze = lr.ndim == 3
        x = lr[None] if squeeze else lr
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"peer {self.name!r} expects NCHW RGB (3 channels), got shape {tuple(lr.shape)}")
        with torch.inference_mode():
            y = self._run(x.detach().float().cpu().clamp(0, 1), int(scale)).cpu().float().clamp_(0, 1)
        return y[0] if squeeze else y

    def _run(self, x: torch.Tensor, scale: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, scales={self.scales})"


class BicubicPeer(Peer):
    """MATLAB ``imresize(lr, scale, 'bicubic')``, clamped. Any positive integer scale works;
    ``scales`` lists the usual ones."""

    name = "bicubic"
    scales = (2, 3, 4, 8)

    def supports(self, scale: int) -> bool:
        return int(scale) >= 1

    def _run(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return imresize(x, scale)


# --------------------------------------------------------------------------- networks


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact net (basicsr ``SRVGGNetCompact``, PReLU activations).

    ``body`` = conv(in, F), PReLU, ``num_conv`` x [conv(F, F), PReLU], conv(F, out * s^2);
    then PixelShuffle(s) plus the nearest-upsampled input as residual.
    """

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_conv: int = 32, upscale: int = 4):
        super().__init__()
        self.upscale = upscale
        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.PReLU(num_parameters=num_feat)]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor]) -> "SRVGGNetCompact":
        idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("body.")})
        if not idx or "body.0.weight" not in sd:
            raise ValueError("no 'body.0.weight' key: not an SRVGGNetCompact state dict")
        last = idx[-1]
        first_w, last_w = sd["body.0.weight"], sd[f"body.{last}.weight"]
        num_feat, num_in = first_w.shape[0], first_w.shape[1]
        num_conv = (last - 2) // 2  # body.0 conv, body.1 act, ..., body.{last} final conv
        num_out = num_in
        s2 = last_w.shape[0] // num_out
        upscale = int(round(s2 ** 0.5))
        if upscale * upscale * num_out != last_w.shape[0]:
            raise ValueError(f"final conv has {last_w.shape[0]} outputs, not {num_out} x a square scale")
        return cls(num_in, num_out, num_feat, num_conv, upscale)


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int = 32):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN / Real-ESRGAN generator with basicsr's key names. The trunk always upsamples
    x4; scales 2 and 1 pixel-unshuffle the input first (so ``conv_first`` takes 4x / 16x
    the channels), as in basicsr."""

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4, num_feat: int = 64,
                 num_block: int = 23, num_grow_ch: int = 32):
        super().__init__()
        self.scale = scale
        in_ch = num_in_ch * {4: 1, 2: 4, 1: 16}[scale]
        self.conv_first = nn.Conv2d(in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        unshuffle = {4: 1, 2: 2, 1: 4}[self.scale]
        if unshuffle > 1:  # pad to a multiple of the unshuffle factor, crop afterwards
            ph, pw = (-h) % unshuffle, (-w) % unshuffle
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="reflect")
            x = F.pixel_unshuffle(x, unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale]

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor]) -> "RRDBNet":
        if "conv_first.weight" not in sd or "conv_last.weight" not in sd:
            raise ValueError("no 'conv_first.weight'/'conv_last.weight' keys: not an RRDBNet state dict")
        num_feat, in_ch = sd["conv_first.weight"].shape[:2]
        num_out = sd["conv_last.weight"].shape[0]
        num_block = len({int(k.split(".")[1]) for k in sd if k.startswith("body.")})
        num_grow = sd["body.0.rdb1.conv1.weight"].shape[0] if num_block else 32
        scale = {num_out: 4, num_out * 4: 2, num_out * 16: 1}.get(in_ch)
        if scale is None:
            raise ValueError(f"conv_first takes {in_ch} channels: not x1/x2/x4 of {num_out}-channel images")
        return cls(num_out, num_out, scale, num_feat, num_block, num_grow)


# --------------------------------------------------------------------------- torch peers


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept checkpoints saved with a wrapper prefix ('params_ema.', 'module.', ...)."""
    for prefix in ("params_ema.", "params.", "module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _load_torch_net(path: Path, build: Callable[[dict], nn.Module]) -> nn.Module:
    if not path.is_file():
        raise ModelLoadError(f"missing file {path}; {_readme_hint(path)}")
    try:
        from safetensors.torch import load_file
        sd = _strip_prefixes(load_file(str(path), device="cpu"))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise ModelLoadError(f"{path}: cannot read as safetensors ({e})") from e
    sd = {k: v.float() for k, v in sd.items()}
    try:
        net = build(sd)
        net.load_state_dict(sd, strict=True)
    except (ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"{path}: weights do not fit the expected network ({e})") from e
    return net.float().eval().requires_grad_(False)


class _TorchPeer(Peer):
    arch: type[nn.Module] = nn.Module

    def __init__(self, path: str | Path, name: str, scale: int, device: str | torch.device | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelLoadError(f"peer {name!r}: missing file {self.path}; {_readme_hint(self.path)}")
        self.name, self.scales = name, (int(scale),)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._net: nn.Module | None = None

    def load(self) -> "_TorchPeer":
        """Read the weights now (otherwise done on first :meth:`upscale`)."""
        if self._net is None:
            net = _load_torch_net(self.path, self.arch.from_state_dict)  # type: ignore[attr-defined]
            net_scale = getattr(net, "upscale", None) or getattr(net, "scale", None)
            if net_scale != self.scales[0]:
                raise ModelLoadError(f"{self.path}: the network upscales x{net_scale}, "
                                     f"but peer {self.name!r} was asked for x{self.scales[0]}")
            self._net = net.to(self.device)
        return self

    def _run(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        self.load()
        assert self._net is not None
        return self._net(x.to(self.device)).float().cpu()


class SRVGGPeer(_TorchPeer):
    """Real-ESRGAN general x4v3 (SRVGGNetCompact), run in float32."""

    arch = SRVGGNetCompact

    def __init__(self, path: str | Path, name: str = "realesr-general-x4v3", scale: int = 4,
                 device: str | torch.device | None = None):
        super().__init__(path, name, scale, device)


class RRDBPeer(_TorchPeer):
    """Real-ESRGAN x4plus (RRDBNet, basicsr key names), run in float32."""

    arch = RRDBNet

    def __init__(self, path: str | Path, name: str = "realesrgan-x4plus", scale: int = 4,
                 device: str | torch.device | None = None):
        super().__init__(path, name, scale, device)


# --------------------------------------------------------------------------- OpenCV peers


# algorithm -> (file stem, scales the published models exist for)
OPENCV_MODELS: dict[str, tuple[str, tuple[int, ...]]] = {
    "fsrcnn": ("FSRCNN", (2, 3, 4)),
    "espcn": ("ESPCN", (2, 3, 4)),
    "lapsrn": ("LapSRN", (2, 4, 8)),
}


def _cv2():
    try:
        import cv2
    except ImportError as e:
        raise ModelLoadError("OpenCV peers need opencv-contrib-python-headless "
                             "(pip install 'upstep[peers]')") from e
    if not hasattr(cv2, "dnn_superres"):
        raise ModelLoadError("this OpenCV build has no dnn_superres module; install "
                             "opencv-contrib-python-headless instead of opencv-python")
    return cv2


class OpenCVPeer(Peer):
    """``cv2.dnn_superres`` FSRCNN / ESPCN / LapSRN. The LR input is rounded to 8-bit BGR (as
    these models were used), the output is 8-bit and returned as float RGB in [0, 1]."""

    def __init__(self, name: str, weights_dir: str | Path | None = None, scales: tuple[int, ...] | None = None):
        if name not in OPENCV_MODELS:
            raise ValueError(f"unknown OpenCV peer {name!r}; known: {sorted(OPENCV_MODELS)}")
        self.name = name
        self.folder = _baselines(weights_dir) / OPENCV_DIR
        stem, known = OPENCV_MODELS[name]
        self._stem = stem
        if scales is None:
            scales = tuple(s for s in known if self.model_path(s).is_file())
        for s in scales:
            if not self.model_path(s).is_file():
                raise ModelLoadError(f"peer {name!r} x{s}: missing file {self.model_path(s)}; "
                                     f"{_readme_hint(self.model_path(s))}")
        if not scales:
            raise ModelLoadError(f"peer {name!r}: no {stem}_x*.pb file in {self.folder}; "
                                 f"{_readme_hint(self.folder)}")
        self.scales = tuple(scales)
        self._impl: dict[int, object] = {}

    def model_path(self, scale: int) -> Path:
        return self.folder / f"{self._stem}_x{int(scale)}.pb"

    def load(self, scale: int | None = None) -> "OpenCVPeer":
        for s in ([scale] if scale is not None else self.scales):
            if s in self._impl:
                continue
            cv2 = _cv2()
            sr = cv2.dnn_superres.DnnSuperResImpl_create()
            try:
                sr.readModel(str(self.model_path(s)))
                sr.setModel(self.name, int(s))
            except cv2.error as e:
                raise ModelLoadError(f"{self.model_path(s)}: OpenCV cannot load it ({e})") from e
            self._impl[s] = sr
        return self

    def _run(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        self.load(scale)
        sr = self._impl[scale]
        outs = []
        for img in x:
            rgb = np.round(img.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            up = sr.upsample(bgr)  # type: ignore[attr-defined]
            h, w = img.shape[-2] * scale, img.shape[-1] * scale
            if up.shape[:2] != (h, w):
                raise RuntimeError(f"{self.name} x{scale} returned {up.shape[:2]}, expected {(h, w)}")
            outs.append(torch.from_numpy(np.ascontiguousarray(up[..., ::-1])).permute(2, 0, 1).float() / 255.0)
        return torch.stack(outs)


# --------------------------------------------------------------------------- discovery


def _weights_dir(weights_dir: str | Path | None) -> Path:
    return Path(weights_dir).expanduser() if weights_dir is not None else weights_root()


def _baselines(weights_dir: str | Path | None) -> Path:
    return _weights_dir(weights_dir) / BASELINES


def _readme_hint(path: Path) -> str:
    return ("see ../shared/weights/README.md (or set UPSTEP_WEIGHTS to the folder holding "
            f"{BASELINES}/)")


@dataclass(frozen=True)
class _TorchSpec:
    name: str
    cls: type[_TorchPeer]
    path: Path
    scale: int


_SCALE_RE = re.compile(r"x(\d+)")


def _torch_specs(weights_dir: str | Path | None) -> list[_TorchSpec]:
    """The canonical torch peers (always listed) plus any other matching files present."""
    base = _baselines(weights_dir)
    specs = {
        "realesr-general-x4v3": _TorchSpec("realesr-general-x4v3", SRVGGPeer,
                                           base / "realesr_general_x4v3.safetensors", 4),
        "realesrgan-x4plus": _TorchSpec("realesrgan-x4plus", RRDBPeer, base / "realesrgan_x4plus.safetensors", 4),
    }
    if not base.is_dir():
        return list(specs.values())
    for p in sorted(base.glob("*.safetensors")):
        stem = p.stem.lower()
        if re.match(r"realesrgan_x\d+plus", stem):
            cls: type[_TorchPeer] = RRDBPeer
        elif stem.startswith("realesr_"):
            cls = SRVGGPeer
        else:
            continue
        if any(sp.path == p for sp in specs.values()):
            continue
        name = stem.replace("_", "-")
        m = _SCALE_RE.search(stem)
        scale = int(m.group(1)) if m else 4
        # a precision/EMA variant (realesrgan_x4plus_fp32...) stands in for an absent canonical file
        base_name = re.sub(r"[-.](fp16|fp32|ema)$", "", name)
        if base_name in specs and base_name != name and not specs[base_name].path.is_file():
            name = base_name
        elif name in specs:
            continue
        specs[name] = _TorchSpec(name, cls, p, scale)
    return list(specs.values())


def _reasons_and_factories(scale: int, weights_dir: str | Path | None):
    """name -> (factory or None, reason if unavailable), in listing order."""
    scale = int(scale)
    out: dict[str, tuple[Callable[[], Peer] | None, str]] = {}
    for spec in _torch_specs(weights_dir):
        if spec.scale != scale:
            out[spec.name] = (None, f"x{spec.scale} only ({spec.path.name}); no x{scale} model")
        elif not spec.path.is_file():
            out[spec.name] = (None, f"missing file {spec.path}; {_readme_hint(spec.path)}")
        else:
            out[spec.name] = ((lambda s=spec: s.cls(s.path, s.name, s.scale)), "")
    folder = _baselines(weights_dir) / OPENCV_DIR
    try:
        _cv2()
        cv_missing = ""
    except ModelLoadError as e:
        cv_missing = str(e)
    for name, (stem, known) in OPENCV_MODELS.items():
        path = folder / f"{stem}_x{scale}.pb"
        if scale not in known:
            out[name] = (None, f"{stem} is published for x{', x'.join(map(str, known))} only; no x{scale} model")
        elif not path.is_file():
            out[name] = (None, f"missing file {path}; {_readme_hint(path)}")
        elif cv_missing:
            out[name] = (None, cv_missing)
        else:
            out[name] = ((lambda n=name: OpenCVPeer(n, weights_dir, (scale,))), "")
    return out


def available_peers(scale: int, weights_dir: str | Path | None = None) -> list[Peer]:
    """Bicubic first, then every peer whose weight file exists for ``scale`` (weights are
    read lazily, on first use or ``peer.load()``)."""
    peers: list[Peer] = [BicubicPeer()]
    for factory, _ in _reasons_and_factories(scale, weights_dir).values():
        if factory is not None:
            peers.append(factory())
    return peers


def unavailable_peers(scale: int, weights_dir: str | Path | None = None) -> dict[str, str]:
    """Peer name -> why it cannot run at ``scale`` (missing file, no such model, no OpenCV)."""
    return {n: why for n, (factory, why) in _reasons_and_factories(scale, weights_dir).items() if factory is None}


def peer_names(scale: int | None = None, weights_dir: str | Path | None = None) -> list[str]:
    """Every peer name known here (available or not)."""
    return ["bicubic"] + list(_reasons_and_factories(scale or 4, weights_dir))


def get_peer(name: str, scale: int, weights_dir: str | Path | None = None,
             device: str | torch.device | None = None) -> Peer:
    """The peer ``name`` for ``scale``, weights loaded. Raises :class:`ModelLoadError` naming
    the missing file (or other reason) when it cannot run, ``ValueError`` for unknown names."""
    key = name.strip().lower()
    if key == "bicubic":
        return BicubicPeer()
    table = _reasons_and_factories(scale, weights_dir)
    if key not in table:
        raise ValueError(f"unknown peer {name!r}; known: {['bicubic'] + list(table)}")
    factory, why = table[key]
    if factory is None:
        raise ModelLoadError(f"peer {key!r} x{scale} is unavailable: {why}")
    peer = factory()
    if isinstance(peer, _TorchPeer):
        if device is not None:
            peer.device = torch.device(device)
        peer.load()
    elif isinstance(peer, OpenCVPeer):
        peer.load(int(scale))
    return peer


__all__ = ["Peer", "BicubicPeer", "SRVGGPeer", "RRDBPeer", "OpenCVPeer", "SRVGGNetCompact", "RRDBNet",
           "available_peers", "unavailable_peers", "get_peer", "peer_names"]
