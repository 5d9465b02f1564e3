"""ResShift: diffusion that shifts the residual between the HR and the LR latent (Yue et al. 2023).

Notation (one place for every ResShift user: the teacher recipe, the co-learning recipe and
``ResShiftSRModel``). ``x_0`` is the HR latent, ``y`` the latent of the bicubic-upsampled LR
image (same shape), ``t`` an integer step in 1..T (``t = 0`` is the data).

Forward process (marginal)::

    x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps,          eps ~ N(0, I)

so ``x_T ~ y + kappa sqrt(eta_T) eps`` (eta_T ~ 1): sampling starts from the *noisy LR latent*,
not from pure noise. Schedule (ResShift §3.1, "exponential" in its code): with
``b_t = sqrt(eta_t)``, ``b_1 = 0.04``, ``b_T = 0.999`` and power ``p = 0.3``::

    b_t = b_1 * (b_T / b_1) ** (((t - 1) / (T - 1)) ** p)       (t = 1..T)

i.e. geometric in ``((t-1)/(T-1))^p``; ``eta_0 = 0``. (ResShift's released code uses
``b_1 = min(0.04 / kappa, 0.04)`` and ``b_T = 0.99``; the numbers here follow the paper and
the co-learning seed; both are parameters.)

Posterior (ResShift eq. 7), with ``alpha_t = eta_t - eta_{t-1}``::

    q(x_{t-1} | x_t, x_0) = N( eta_{t-1}/eta_t x_t + alpha_t/eta_t x_0,  kappa^2 eta_{t-1}/eta_t alpha_t I )

The stochastic sampler plugs the network's ``x0_hat`` into it. The deterministic sampler
(SinSR eq. 5-6) keeps the *implied noise* fixed instead: with

    eps_hat = (x_t - x0_hat - eta_t (y - x0_hat)) / (kappa sqrt(eta_t))

it sets ``x_s = x0_hat + eta_s (y - x0_hat) + kappa sqrt(eta_s) eps_hat`` for the next step
``s < t``, which expands to ``x_s = k x0_hat + m x_t + j y`` with

    m = sqrt(eta_s / eta_t)
    j = eta_s - sqrt(eta_s * eta_t)
    k = 1 - eta_s + sqrt(eta_s * eta_t) - sqrt(eta_s / eta_t)      (= 1 - m - j)

At ``s = 0`` (eta_0 = 0): ``m = j = 0``, ``k = 1``, so the last step returns ``x0_hat``. The
map x_T -> x_0 is deterministic: the mapping a one-step student distils (SinSR eq. 1-2).
Samplers are plain functions ``(denoiser, x_T, y, schedule, steps) -> x_0`` with
``denoiser(x_t, y, t_index) -> x0_hat`` and ``t_index`` a (batch,) long tensor in 1..T.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

# denoiser(x_t, y, t) -> x0_hat, t an integer (batch,) tensor in 1..T
X0Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ResShiftSchedule:
    T: int = 15
    kappa: float = 2.0
    sqrt_eta_1: float = 0.04
    sqrt_eta_T: float = 0.999
    power: float = 0.3

    def __post_init__(self):
        if self.T < 2:
            raise ValueError(f"ResShift needs T >= 2, got {self.T}")
        if not 0 < self.sqrt_eta_1 < self.sqrt_eta_T < 1:
            raise ValueError("need 0 < sqrt_eta_1 < sqrt_eta_T < 1")

    # ---- the schedule ------------------------------------------------------------------
    def sqrt_etas(self) -> torch.Tensor:
        """float64 (T + 1,): index t holds sqrt(eta_t); entry 0 is eta_0 = 0."""
        t = torch.arange(1, self.T + 1, dtype=torch.float64)
        frac = ((t - 1) / (self.T - 1)) ** self.power
        b = self.sqrt_eta_1 * (self.sqrt_eta_T / self.sqrt_eta_1) ** frac
        return torch.cat([torch.zeros(1, dtype=torch.float64), b])

    def etas(self) -> torch.Tensor:
        """float64 (T + 1,): eta_0 = 0, eta_1 .. eta_T."""
        return self.sqrt_etas() ** 2

    def alphas(self) -> torch.Tensor:
        """float64 (T + 1,): alpha_t = eta_t - eta_{t-1} (alpha_0 unused, set 0)."""
        e = self.etas()
        return torch.cat([torch.zeros(1, dtype=torch.float64), e[1:] - e[:-1]])

    def eta(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """eta_t broadcast against ``like`` (t an int or a (batch,) integer tensor)."""
        return _gather(self.etas(), t, like)

    def input_scale(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """1 / sqrt(kappa^2 eta_t + 1): ResShift's normalisation of the network input x_t."""
        return torch.rsqrt(self.kappa**2 * self.eta(t, like) + 1.0)

    # ---- forward process ---------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor | int,
                 eps: torch.Tensor) -> torch.Tensor:
        """x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps."""
        eta = self.eta(t, x0)
        return x0 + eta * (y - x0) + self.kappa * eta.sqrt() * eps

    def prior_sample(self, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The sampler's start x_T = y + kappa sqrt(eta_T) eps."""
        return y + self.kappa * self.sqrt_eta_T * eps

    # ---- posterior (ResShift eq. 7) ----------------------------------------------------
    def posterior_mean_var(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | int):
        """Mean and variance of q(x_{t-1} | x_t, x_0)."""
        eta_t = self.eta(t, x_t)
        eta_prev = _gather(self.etas(), t - 1, x_t)
        alpha_t = eta_t - eta_prev
        mean = eta_prev / eta_t * x_t + alpha_t / eta_t * x0
        var = self.kappa**2 * eta_prev / eta_t * alpha_t
        return mean, var.expand_as(mean)

    def posterior_sample(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor | int,
                         noise: torch.Tensor) -> torch.Tensor:
        mean, var = self.posterior_mean_var(x_t, x0, t)
        return mean + var.sqrt() * noise

    # ---- deterministic step (SinSR) ----------------------------------------------------
    def ddim_coefficients(self, t: int, s: int) -> tuple[float, float, float]:
        """(k, m, j) of x_s = k x0_hat + m x_t + j y, for steps t > s >= 0."""
        if not self.T >= t > s >= 0:
            raise ValueError(f"need T >= t > s >= 0, got t={t}, s={s}")
        e = self.etas()
        eta_t, eta_s = float(e[t]), float(e[s])
        m = math.sqrt(eta_s / eta_t)
        j = eta_s - math.sqrt(eta_s * eta_t)
        k = 1.0 - eta_s + math.sqrt(eta_s * eta_t) - m
        return k, m, j

    def timesteps(self, steps: int) -> list[int]:
        """The ``steps`` evaluation times T = t_1 > ... > t_N >= 1 (evenly spread; steps = T
        visits every t, steps = 1 only T)."""
        if not 1 <= steps <= self.T:
            raise ValueError(f"ResShift sampling takes 1..{self.T} steps, got {steps}")
        if steps == 1:
            return [self.T]
        grid = torch.linspace(self.T, 1, steps, dtype=torch.float64).round().long().tolist()
        return sorted(set(grid), reverse=True)

    def config(self) -> dict:
        return asdict(self)


def _gather(table: torch.Tensor, t, like: torch.Tensor) -> torch.Tensor:
    if isinstance(t, int):
        return torch.tensor(float(table[t]), dtype=like.dtype, device=like.device)
    v = table.to(like.device)[t.long().to(like.device)].to(like.dtype)
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def _tvec(t: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((like.shape[0],), t, dtype=torch.long, device=like.device)


def ddim_sample(denoiser: X0Denoiser, x_T: torch.Tensor, y: torch.Tensor, schedule: ResShiftSchedule,
                steps: int | None = None, return_trajectory: bool = False):
    """Deterministic (SinSR) sampler from ``x_T``; returns x_0 (and the visited states).

    Gradients flow if the caller enables them (the teacher is run under ``no_grad`` by its
    callers; a one-step student is the ``steps = 1`` case, i.e. one denoiser call at t = T).
    """
    grid = schedule.timesteps(steps or schedule.T)
    x = x_T
    traj = [(schedule.T, x_T)]
    for i, t in enumerate(grid):
        s = grid[i + 1] if i + 1 < len(grid) else 0
        x0_hat = denoiser(x, y, _tvec(t, x)).to(x.dtype)
        k, m, j = schedule.ddim_coefficients(t, s)
        x = k * x0_hat + m * x + j * y
        traj.append((s, x))
    return (x, traj) if return_trajectory else x


def posterior_sample_loop(denoiser: X0Denoiser, x_T: torch.Tensor, y: torch.Tensor,
                          schedule: ResShiftSchedule, generator: torch.Generator | None = None) -> torch.Tensor:
    """ResShift's original stochastic sampler: T steps of q(x_{t-1} | x_t, x0_hat)."""
    x = x_T
    for t in range(schedule.T, 0, -1):
        x0_hat = denoiser(x, y, _tvec(t, x)).to(x.dtype)
        noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        x = schedule.posterior_sample(x, x0_hat, t, noise)  # t = 1: variance 0, x = x0_hat
    return x


def sample_timesteps(batch: int, T: int, generator: torch.Generator | None = None,
                     p_terminal: float = 0.0) -> torch.Tensor:
    """Training times: uniform on {1..T}; with probability ``p_terminal`` exactly T."""
    t = torch.randint(1, T + 1, (batch,), generator=generator)
    if p_terminal > 0:
        at_end = torch.rand(batch, generator=generator) < p_terminal
        t = torch.where(at_end, torch.full_like(t, T), t)
    return t
