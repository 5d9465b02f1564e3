"""Deterministic DDIM sampler for a v-prediction model in continuous time.

``steps = N`` visits t_N = 1 > t_{N-1} > ... > t_0 = 0 on a uniform grid ("trailing"
spacing: the first evaluation is at the noisiest point, t = 1). ``N = 1`` is one jump
t = 1 -> 0, i.e. ``z_0 = z0_hat(eps, t=1) = -v_hat``.
"""
from __future__ import annotations

from typing import Callable

import torch

from upstep.diffusion.schedule import CosineSchedule

# denoiser(z_t, t) -> v_hat, with t a (batch,) tensor
VDenoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ddim_timesteps(steps: int) -> torch.Tensor:
    if steps < 1:
        raise ValueError(f"DDIM needs at least 1 step, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)


@torch.no_grad()
def ddim_sample(denoiser: VDenoiser, z_start: torch.Tensor, steps: int,
                schedule: CosineSchedule | None = None) -> torch.Tensor:
    """Run DDIM (eta = 0) from ``z_start`` at t = 1 down to t = 0; returns z0."""
    schedule = schedule or CosineSchedule()
    z = z_start
    grid = ddim_timesteps(steps)
    batch = z.shape[0]
    for t_now, t_next in zip(grid[:-1], grid[1:]):
        t = torch.full((batch,), float(t_now), device=z.device, dtype=torch.float32)
        v = denoiser(z, t).to(z.dtype)
        z0_hat = schedule.z0_from_v(z, v, t)
        if float(t_next) <= 0.0:
            z = z0_hat
            break
        eps_hat = schedule.eps_from_v(z, v, t)
        s = torch.full_like(t, float(t_next))
        z = schedule.add_noise(z0_hat, eps_hat, s)
    return z
