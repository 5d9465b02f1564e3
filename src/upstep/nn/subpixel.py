"""Resize-convolution (bilinear x2, then a 3x3 convolution) computed at the input resolution.

With bilinear x2 upsampling (align_corners False) the upsampled rows are

    U[2m] = 0.25 x[m-1] + 0.75 x[m],        U[2m+1] = 0.75 x[m] + 0.25 x[m+1]

(edges clamped: x[-1] = x[0], x[H] = x[H-1]), and the 3x3 convolution reads U[p-1], U[p], U[p+1].
So output row 2i+a (a in {0, 1}) is a fixed linear function of input rows i-1, i, i+1, and the pair
is one 3x3 convolution of the replicate-padded input to 4x the channels followed by a pixel shuffle
(the sub-pixel form, Shi et al. 2016), with kernel K[o, a, b] = sum_{k,l} w[o, k, l] B[a, k] (x) B[b, l].
That is the same number of multiply-accumulates, but at a quarter of the pixels, with 4x the output
channels and no upsampled intermediate: the decoder's full-resolution stages spend their time on
memory traffic and on 3-channel convolutions that vectorise badly.

The one place the forms differ is the outermost output ring: there the convolution's zero padding
meets the upsampled image, which the sub-pixel form would replace by the clamped edge. Those rows and
columns are recomputed by the original pair on two-pixel strips, so the result is the pair's to
float rounding (tested).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# B[a, k, d]: the weight of input row i + d - 1 in upsampled row 2i + a + k - 1 (the conv's tap k)
_BILINEAR_TAPS = torch.tensor([
    [[0.75, 0.25, 0.0], [0.25, 0.75, 0.0], [0.0, 0.75, 0.25]],   # a = 0: U[2i-1], U[2i], U[2i+1]
    [[0.25, 0.75, 0.0], [0.0, 0.75, 0.25], [0.0, 0.25, 0.75]],   # a = 1: U[2i], U[2i+1], U[2i+2]
], dtype=torch.float64)


def is_resize_conv(up: nn.Module, conv: nn.Module) -> bool:
    """``up`` then ``conv`` is a bilinear x2 (align_corners False) then a 3x3, stride-1, padding-1 conv."""
    return (isinstance(up, nn.Upsample) and up.mode == "bilinear" and not up.align_corners
            and up.scale_factor in (2, 2.0, (2.0, 2.0)) and isinstance(conv, nn.Conv2d)
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros")


class SubpixelResizeConv(nn.Module):
    """Inference form of ``nn.Upsample(2, bilinear) -> nn.Conv2d(3x3)``; see the module doc.
    Built from (and equal to) the pair at the time of construction: it does not follow later
    changes to the convolution's weights, so build it for inference only."""

    def __init__(self, up: nn.Upsample, conv: nn.Conv2d):
        super().__init__()
        if not is_resize_conv(up, conv):
            raise ValueError("SubpixelResizeConv needs bilinear x2 upsampling then a 3x3 stride-1 padding-1 conv")
        w = conv.weight.detach().double()
        o, c = w.shape[:2]
        k = torch.einsum("ockl,akd,ble->oabcde", w, _BILINEAR_TAPS, _BILINEAR_TAPS)
        self.register_buffer("weight", k.reshape(o * 4, c, 3, 3).to(conv.weight.dtype))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros(o, dtype=conv.weight.dtype)
        self.register_buffer("bias", bias.repeat_interleave(4))
        self.pair = nn.Sequential(up, conv)  # for the border strips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.weight, self.bias), 2)
        top, bottom = self.pair(x[..., :2, :])[..., :1, :], self.pair(x[..., -2:, :])[..., -1:, :]
        y = torch.cat([top, y[..., 1:-1, :], bottom], dim=2)
        left, right = self.pair(x[..., :, :2])[..., :, :1], self.pair(x[..., :, -2:])[..., :, -1:]
        return torch.cat([left, y[..., :, 1:-1], right], dim=3)


def fold_resize_convs(seq: nn.Sequential) -> nn.Sequential:
    """A copy-free rewrite of ``seq`` with every (bilinear x2, 3x3 conv) pair as a ``SubpixelResizeConv``."""
    layers, mods, i = [], list(seq), 0
    while i < len(mods):
        if i + 1 < len(mods) and is_resize_conv(mods[i], mods[i + 1]):
            layers.append(SubpixelResizeConv(mods[i], mods[i + 1]))
            i += 2
        else:
            layers.append(mods[i])
            i += 1
    return nn.Sequential(*layers)
