"""benchmarks/camera_hr.py: the band-power measure camera_pair's HR blur is set from."""
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from camera_hr import band_logs, centre_crop, gaussian_blur  # noqa: E402


def test_band_logs_is_flat_for_white_noise_and_falls_with_blur_as_a_gaussian_predicts():
    noise = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)).double()
    mid, high = band_logs(noise[0, 0].numpy())
    assert abs(mid) < 0.05 and abs(high) < 0.05          # white noise: the same power in every band
    prev = 0.0
    for sigma in (0.6, 0.9, 1.2):
        m, h = band_logs(gaussian_blur(noise, sigma)[0, 0].numpy())
        assert h < m < 0 and h < prev                      # softer, the high band most
        # a Gaussian's power transfer exp(-4 pi^2 sigma^2 f^2) at f = 0.35 against f = 0.09 (rough band centres)
        want = math.log10(math.exp(-4 * math.pi ** 2 * sigma ** 2 * (0.35 ** 2 - 0.09 ** 2)))
        assert abs(h - want) < 0.2 * abs(want) + 0.1
        prev = h


def test_band_logs_ignores_contrast_and_centre_crop_skips_small_images():
    y = np.random.default_rng(1).random((256, 256))
    assert np.allclose(band_logs(y), band_logs(5 * y + 3))
    assert centre_crop(torch.zeros(1, 3, 255, 400)) is None
    assert centre_crop(torch.zeros(1, 3, 300, 400)).shape == (1, 3, 256, 256)
