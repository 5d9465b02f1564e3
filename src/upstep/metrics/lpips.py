"""LPIPS-alex (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features"), v0.1.

AlexNet conv features (ImageNet weights) tapped after relu1..relu5, each unit-normalised over
channels; squared difference, 1x1 linear head, spatial mean, summed over the five layers.
Weights come from the offline folder (``../shared/weights/lpips``) as safetensors; nothing
is downloaded and nothing is unpickled.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from upstep.errors import UpstepError
from upstep.paths import weights_root


class MetricUnavailable(UpstepError):
    pass


def _alexnet_features() -> nn.ModuleList:
    """torchvision ``alexnet().features`` split into the five LPIPS slices (same indices)."""
    relu = lambda: nn.ReLU(inplace=False)  # noqa: E731
    pool = lambda: nn.MaxPool2d(3, 2)  # noqa: E731
    return nn.ModuleList([
        nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), relu()),                       # 0, 1
        nn.Sequential(pool(), nn.Conv2d(64, 192, 5, padding=2), relu()),         # 2, 3, 4
        nn.Sequential(pool(), nn.Conv2d(192, 384, 3, padding=1), relu()),        # 5, 6, 7
        nn.Sequential(nn.Conv2d(384, 256, 3, padding=1), relu()),                # 8, 9
        nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), relu()),                # 10, 11
    ])


_TV_INDEX = {"0": (0, 0), "3": (1, 1), "6": (2, 1), "8": (3, 0), "10": (4, 0)}


class LPIPS(nn.Module):
    def __init__(self):
        super().__init__()
        self.slices = _alexnet_features()
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in (64, 192, 384, 256, 256))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    @classmethod
    def from_weights_dir(cls, folder: str | Path | None = None) -> "LPIPS":
        folder = Path(folder) if folder else weights_root() / "lpips"
        feats, heads = folder / "alexnet_features.safetensors", folder / "lpips_v0.1_alex_heads.safetensors"
        for f in (feats, heads):
            if not f.is_file():
                raise MetricUnavailable(f"LPIPS unavailable: {f} not found (set UPSTEP_WEIGHTS to the folder "
                                        "holding lpips/)")
        net = cls()
        for key, value in load_file(str(feats)).items():
            idx, kind = key.split(".")
            s, j = _TV_INDEX[idx]
            getattr(net.slices[s][j], kind).data.copy_(value)
        for key, value in load_file(str(heads)).items():
            net.heads[int(key[3])].weight.data.copy_(value)
        return net

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: NCHW RGB in [0, 1]; returns one distance per image."""
        fx, fy = (x * 2 - 1 - self.shift) / self.scale, (y * 2 - 1 - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        for sl, head in zip(self.slices, self.heads):
            fx, fy = sl(fx), sl(fy)
            nx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = fy / (fy.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + head((nx - ny) ** 2).mean((2, 3)).flatten()
        return total
