"""Variance-preserving schedule in continuous time and the v-parameterisation.

Conventions (one place for the whole project):

* time ``t`` in [0, 1]; ``z_t = alpha_t * z_0 + sigma_t * eps`` with ``alpha^2 + sigma^2 = 1``;
* cosine schedule ``alpha_t = cos(pi t / 2)``, ``sigma_t = sin(pi t / 2)``: zero terminal SNR
  (``alpha_1 = 0``), so a one-step sampler that starts from pure noise at t = 1 is well posed;
* log-SNR ``lambda_t = log(alpha_t^2 / sigma_t^2)``, decreasing in t;
* the network predicts ``v = alpha * eps - sigma * z_0`` (Salimans & Ho 2022), hence
  ``z0_hat = alpha * z_t - sigma * v_hat`` and ``eps_hat = sigma * z_t + alpha * v_hat``;
* YONOS-SR eq. 2 weights the z_0 error by ``omega(lambda) = 1 + alpha^2 / sigma^2`` (= 1 + SNR).
  Since ``||z0 - z0_hat||^2 = sigma^2 ||v - v_hat||^2``, that weighting equals plain v-MSE
  for a VP schedule. ``omega_max`` clips omega (1 + SNR = 1 / sigma^2, so a clip at M changes
  every t below ``omega_clip_time(M)``); ``omega_max = None`` is the paper's weighting,
  unclipped: the loss stays finite since omega * ||z0 - z0_hat||^2 = ||v - v_hat||^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine VP schedule with zero terminal SNR. ``omega_max`` clips the eq. 2 weight (None: no clip)."""

    omega_max: float | None = 1000.0

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = t.clamp(0.0, 1.0)
        alpha = torch.cos(0.5 * math.pi * t)
        sigma = torch.sin(0.5 * math.pi * t)
        # cos(pi/2) is 6e-17 in float64: make the terminal SNR exactly zero.
        alpha = torch.where(t >= 1.0, torch.zeros_like(alpha), alpha)
        return alpha, sigma

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.alpha_sigma(t)
        return 2.0 * (torch.log(alpha) - torch.log(sigma))

    def omega(self, t: torch.Tensor) -> torch.Tensor:
        """YONOS eq. 2 weight ``1 + alpha^2 / sigma^2``, clipped at ``omega_max`` unless it is None."""
        alpha, sigma = self.alpha_sigma(t)
        snr = alpha**2 / sigma.clamp_min(1e-12) ** 2
        return 1.0 + snr if self.omega_max is None else (1.0 + snr).clamp(max=self.omega_max)

    # --- noising and the v-parameterisation -------------------------------------------
    def add_noise(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = _bcast(self.alpha_sigma(t), z0)
        return alpha * z0 + sigma * eps

    def v_target(self, z0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = _bcast(self.alpha_sigma(t), z0)
        return alpha * eps - sigma * z0

    def z0_from_v(self, z_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = _bcast(self.alpha_sigma(t), z_t)
        return alpha * z_t - sigma * v

    def eps_from_v(self, z_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha, sigma = _bcast(self.alpha_sigma(t), z_t)
        return sigma * z_t + alpha * v


def omega_clip_time(omega_max: float | None) -> float:
    """The t below which ``omega_max`` clips the weight: 1 + SNR = 1 / sin^2(pi t / 2) > omega_max
    (0 when unclipped). E.g. 5 -> 0.295: the clip changes 29.5 % of uniform training times."""
    if omega_max is None or omega_max <= 1:
        return 0.0 if omega_max is None else 1.0
    return 2 / math.pi * math.asin(1 / math.sqrt(omega_max))


def _bcast(pair: tuple[torch.Tensor, torch.Tensor], like: torch.Tensor):
    shape = (-1,) + (1,) * (like.ndim - 1)
    return tuple(p.to(like.dtype).reshape(shape) for p in pair)


def sample_t(batch: int, *, p_terminal: float = 0.0, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> torch.Tensor:
    """Training times: uniform on [0, 1], with probability ``p_terminal`` set to exactly 1.

    ``p_terminal = 0`` is the papers' form. A one-step sampler only ever evaluates the network
    at t = 1, which omega(lambda) weights least (DESIGN.md), so the shipped models put extra
    mass there; the ablation benchmarks keep the papers' form available.
    """
    t = torch.rand(batch, generator=generator, device=device)
    if p_terminal > 0:
        at_end = torch.rand(batch, generator=generator, device=device) < p_terminal
        t = torch.where(at_end, torch.ones_like(t), t)
    return t
