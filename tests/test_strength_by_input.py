"""benchmarks/strength_by_input.py: the noise estimate it splits inputs by."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from strength_by_input import noise_sigma  # noqa: E402


def test_noise_sigma_recovers_added_gaussian_noise_and_ignores_a_linear_ramp():
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 200, 256)[None, :] + torch.linspace(0, 50, 256)[:, None]   # locally linear content
    assert noise_sigma(ramp) < 1e-3
    for sigma in (2.0, 5.0, 10.0):
        noisy = ramp + sigma * torch.randn(256, 256, generator=g)
        assert abs(noise_sigma(noisy) - sigma) < 0.05 * sigma
    # fine texture reads as noise too (the docstring says so): a 2-pixel checkerboard is not flat
    checker = 20.0 * ((torch.arange(256)[:, None] + torch.arange(256)[None, :]) % 2)
    assert noise_sigma(checker) > 5
