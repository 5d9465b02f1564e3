"""Exponential moving average of a module's parameters (weights used for evaluation/export)."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: int = 100):
        self.decay = decay
        self.warmup = warmup
        self.shadow = copy.deepcopy(module).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        # short runs: ramp the decay up so early weights do not dominate (1 + n) / (warmup + n)
        d = min(self.decay, (1 + self.updates) / (self.warmup + self.updates))
        for s, p in zip(self.shadow.parameters(), module.parameters()):
            s.lerp_(p.detach().to(s.dtype), 1.0 - d)
        for s, b in zip(self.shadow.buffers(), module.buffers()):
            s.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        self.shadow.load_state_dict(state)
        self.updates = updates
