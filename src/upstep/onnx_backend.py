"""ONNX Runtime for a model's networks on the CPU (issue 13's runtime option).

``onnx_model(model)`` returns a copy of a v-diffusion model whose two networks run in ONNX
Runtime: the U-Net (diffusers ``UNet2DModel``) and, for the resize-convolution decoder, its
learned branch. Everything else (bicubic upsampling, the noise, DDIM, the grid notch, pixel
shuffles, tiling) stays in torch, so the sampler is the same code for both backends. ORT fuses
each convolution with its activation and runs GroupNorm and SiLU in its own kernels
(``upstep bench --backend onnxruntime`` times it).

The networks are exported once per model (``torch.onnx.export``, dynamic batch and tile size)
into a cache folder (``$UPSTEP_CACHE``, default ``~/.cache/upstep``) under a name that is the
SHA-1 of the model's config and weights, written atomically; later processes load the file. A
cache folder that cannot be written, or a cached file that cannot be read, falls back to a fresh
export in a temporary folder: the upscale goes on.
Only float32 (ORT's CPU kernels) and text-free U-Nets are supported; ``available(model, ...)``
says whether a model and precision qualify.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from upstep.atomic import atomic_write


def cache_dir() -> Path:
    return Path(os.environ.get("UPSTEP_CACHE", Path.home() / ".cache" / "upstep")) / "onnx"


def installed() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def available(model, device: torch.device, dtype: torch.dtype) -> bool:
    """ORT can run this model here, and well: CPU, float32, a text-free U-Net without self-attention
    (the exported attention materialises every N x N score matrix, where torch's fused kernel does
    not: gigabytes for a 1024² tile), onnxruntime installed."""
    from diffusers.models.attention_processor import Attention

    unet = getattr(getattr(model, "unet", None), "unet", None)
    return (device.type == "cpu" and dtype == torch.float32 and installed()
            and getattr(model, "kind", None) == "vdiffusion" and type(unet).__name__ == "UNet2DModel"
            and not any(isinstance(m, Attention) for m in unet.modules()))


def _digest(model: nn.Module) -> str:
    h = hashlib.sha1(json.dumps(model.config(), sort_keys=True).encode())
    h.update(torch.__version__.encode())
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


def _export(net: nn.Module, args: tuple, names: list[str], dynamic: dict, path: Path) -> None:
    def write(tmp):
        with warnings.catch_warnings():  # the tracer's notes on diffusers' shape checks
            warnings.simplefilter("ignore")
            torch.onnx.export(net, args, tmp, input_names=names[:-1], output_names=names[-1:],
                              dynamic_axes=dynamic, opset_version=17, dynamo=False)
    atomic_write(path, write, suffix=".onnx")


def _options():
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no spin-waiting between runs: ORT's threads would otherwise keep the cores busy while torch
    # runs the steps between the networks (notch, pixel shuffles), and slow both down
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.enable_cpu_mem_arena = False  # the arena keeps every tile shape's peak: memory would grow with the image
    return so


def _session(net: nn.Module, args: tuple, names: list[str], dynamic: dict, path: Path):
    """An ORT session for ``net`` from the cached export at ``path`` (made if missing). An
    unwritable cache or an unreadable cached file: export again into a temporary folder."""
    import tempfile

    import onnxruntime as ort

    try:
        if not path.is_file():
            _export(net, args, names, dynamic, path)
        return ort.InferenceSession(str(path), _options(), providers=["CPUExecutionProvider"])
    except Exception as e:  # OSError from the cache folder, ORT's own errors for a damaged file
        warnings.warn(f"{path}: {e}; exporting again into a temporary folder (check {path.parent})", stacklevel=3)
    with tempfile.TemporaryDirectory(prefix="upstep-onnx-") as tmp:
        fresh = Path(tmp) / path.name
        _export(net, args, names, dynamic, fresh)
        return ort.InferenceSession(str(fresh), _options(), providers=["CPUExecutionProvider"])


def _run(session, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
    out = session.run(None, {k: v.detach().float().contiguous().numpy() for k, v in feeds.items()})[0]
    return torch.from_numpy(out)


class _OrtUNet(nn.Module):
    """Stands in for the diffusers ``UNet2DModel`` inside ``SRUNet``: (x, timestep) -> .sample."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor, timestep) -> SimpleNamespace:
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(x.shape[0])
        return SimpleNamespace(sample=_run(self.session, {"x": x, "t": t}))


class _OrtBranch(nn.Module):
    """Stands in for the decoder's learned branch: z -> pixels."""

    def __init__(self, session):
        super().__init__()
        self.session = session

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _run(self.session, {"z": z})


class _UNetExport(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, x, t):
        return self.unet(x, t).sample


def onnx_model(model, folder: Path | None = None):
    """A copy of ``model`` whose U-Net (and decoder branch) run in ONNX Runtime; see the module doc."""
    import copy

    folder = Path(folder) if folder else cache_dir()
    model = copy.deepcopy(model).float().eval()
    key = _digest(model)
    lat, cond = model.unet.latent_channels, model.unet.cond_channels
    m = model.unet.multiple
    x = torch.randn(1, lat + cond, 4 * m, 4 * m)
    t = torch.full((1,), 1000.0)
    hw = {0: "n", 2: "h", 3: "w"}
    with torch.no_grad():
        sess = _session(_UNetExport(model.unet.unet), (x, t), ["x", "t", "v"],
                        {"x": hw, "t": {0: "n"}, "v": hw}, folder / f"{key}_unet.onnx")
        model.unet.unet = _OrtUNet(sess)
        branch = getattr(model.autoencoder, "residual", None)
        if isinstance(branch, nn.Sequential):
            z = torch.randn(1, model.autoencoder.latent_channels, 4 * m, 4 * m)
            sess = _session(branch, (z,), ["z", "y"], {"z": hw, "y": hw}, folder / f"{key}_decoder.onnx")
            model.autoencoder.residual = _OrtBranch(sess)
    model.backend = "onnxruntime"
    return model
