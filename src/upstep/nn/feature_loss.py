"""Feature (perceptual) training loss on the frozen ImageNet EfficientNet-Lite0.

For images x, y (NCHW, [-1, 1]) and the network's features f_l at the taps of
``upstep.nn.efficientnet`` (``taps``; default 1/4 ... 1/32 of the size), LPIPS-style without
learned heads:

    L_feat(x, y) = sum_l mean_{h,w} || n(f_l(x)) - n(f_l(y)) ||^2_c,     n(f) = f / ||f||_c

(channel-wise unit normalisation makes the layers comparable without weights). This is a
*training* loss; LPIPS-alex stays the independent evaluation metric and is never trained on.
"""
from __future__ import annotations

import torch
from torch import nn

KINDS = ("efficientnet_lite0",)


class FeatureLoss(nn.Module):
    def __init__(self, kind: str = "efficientnet_lite0", taps=None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown feature loss network {kind!r}; known: {list(KINDS)} "
                             "(LPIPS-alex is the evaluation metric and is never a training loss)")
        from upstep.nn.efficientnet import FEATURE_TAPS, block_channels, pretrained_efficientnet_lite0

        self.net = pretrained_efficientnet_lite0(include_top=False)   # frozen (weights are buffers)
        self.kind = kind
        self.taps = tuple(sorted(taps or FEATURE_TAPS))
        for i in self.taps:
            block_channels(i)   # a clear error for a block that does not exist

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over the batch; gradients flow to ``x`` (and ``y``, if it requires them)."""
        fx = self.net.forward_features((x.float() + 1) / 2, self.taps)
        with torch.no_grad() if not y.requires_grad else torch.enable_grad():
            fy = self.net.forward_features((y.float() + 1) / 2, self.taps)
        total = x.new_zeros((), dtype=torch.float32)
        for a, b in zip(fx, fy):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + (a - b).pow(2).sum(1).mean()
        return total
