"""The real-camera training options of issue 29: clean-but-blurred LR (camera_blur), the reference's
hard JPEG rounding (realesrgan_ref) and USM-sharpened targets. Each is deterministic for a seed
and does what its name says."""
import numpy as np
import pytest
import torch

from upstep.degrade import bicubic, degrade, pipelines
from upstep.degrade.realesrgan import jpeg
from upstep.degrade.usm import gaussian_blur, usm_sharpen


def _photo(n=2, size=64, seed=0):
    """Smooth random images with edges: a low-frequency field plus a few hard steps."""
    g = torch.Generator().manual_seed(seed)
    low = torch.nn.functional.interpolate(torch.rand(n, 3, size // 8, size // 8, generator=g), size=(size, size),
                                          mode="bicubic", align_corners=False)
    steps = (torch.arange(size)[None, None, None, :] > size // 2).float() * 0.4
    return (0.3 * low + steps + 0.1).clamp(0, 1)


def _gradient(x):
    y = x.mean(1)
    return float((y[:, 1:] - y[:, :-1]).abs().mean() + (y[:, :, 1:] - y[:, :, :-1]).abs().mean())


@pytest.mark.parametrize("name", ["camera_blur", "realesrgan_ref"])
def test_new_pipelines_are_deterministic_for_a_seed(name):
    hr = _photo()
    a = degrade(hr, 4, name, torch.Generator().manual_seed(3))
    b = degrade(hr, 4, name, torch.Generator().manual_seed(3))
    c = degrade(hr, 4, name, torch.Generator().manual_seed(4))
    assert a.shape == (2, 3, 16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert name in pipelines


def test_camera_blur_is_blurrier_than_bicubic_and_clean():
    hr = _photo(n=4, size=128)
    lr = degrade(hr, 4, "camera_blur", torch.Generator().manual_seed(0))
    ref = bicubic(hr, 4)
    assert _gradient(lr) < 0.95 * _gradient(ref)
    # clean: no more than a few 8-bit levels of noise on average away from the blurred image
    assert (lr - ref).abs().mean() < 8 / 255


def test_hard_jpeg_rounding_is_harsher_than_soft_and_restores_kornia():
    import kornia.enhance.jpeg as kj

    soft_fn = kj._differentiable_polynomial_rounding
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    soft, hard = jpeg(x, 50.0, "soft"), jpeg(x, 50.0, "hard")
    assert torch.equal(hard, jpeg(x, 50.0, "hard"))
    assert kj._differentiable_polynomial_rounding is soft_fn    # the swap is undone
    assert (hard - x).pow(2).mean() > (soft - x).pow(2).mean()  # plain rounding loses more
    with pytest.raises(ValueError, match="rounding"):
        jpeg(x, 50.0, "round")


def test_gaussian_blur_matches_opencv_reflect101():
    cv2 = pytest.importorskip("cv2")
    a = np.random.default_rng(0).random((40, 37))
    ours = gaussian_blur(torch.from_numpy(a)[None, None], 51, 8.0)[0, 0].numpy()
    assert np.abs(ours - cv2.GaussianBlur(a, (51, 51), 0)).max() < 1e-12


def test_usm_raises_the_targets_gradient_and_leaves_flat_areas_alone():
    hr = _photo(n=2, size=96)
    sharp = usm_sharpen(hr)
    assert torch.equal(sharp, usm_sharpen(hr))
    assert _gradient(sharp) > 1.05 * _gradient(hr)
    flat = torch.full((1, 3, 64, 64), 0.5)
    assert torch.equal(usm_sharpen(flat), flat)


def test_camera_blur_names_an_image_smaller_than_the_scale():
    with pytest.raises(ValueError, match="smaller than the scale 4"):
        degrade(torch.rand(1, 3, 3, 8), 4, "camera_blur", torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="NCHW"):
        degrade(torch.rand(8, 8), 4, "camera_blur", torch.Generator().manual_seed(0))


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 1, 2, 3), (1, 3, 5, 40)])
def test_usm_keeps_odd_and_tiny_shapes_and_the_range(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    y = usm_sharpen(x)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1 and torch.isfinite(y).all()
