"""Degradations: bicubic matches the benchmark LR files, avgpool is a block mean, Real-ESRGAN is
seeded, sized and ranged, each of its stages does what its parameters say, and ``upstep
degrade`` writes the same bytes for the same seed and goes on past a bad file."""
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from upstep.cli import main
from upstep.degrade import avgpool, bicubic, degrade, pipelines
from upstep.degrade import realesrgan as R
from upstep.io import read_image
from upstep.paths import data_root


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def _texture(n=1, c=3, h=64, w=64, seed=0) -> torch.Tensor:
    """Random texture with some spatial structure (smoothed noise + fine noise)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(n, c, h // 8, w // 8, generator=g), size=(h, w),
                                             mode="bilinear", align_corners=False)
    return (0.7 * coarse + 0.3 * torch.rand(n, c, h, w, generator=g)).clamp(0, 1)


def _clone(g: torch.Generator) -> torch.Generator:
    c = torch.Generator()
    c.set_state(g.get_state())
    return c


# -- bicubic / avgpool ---------------------------------------------------------------------------

def test_bicubic_reproduces_set5_lr():
    root = data_root() / "eval" / "set5"
    if not (root / "hr").is_dir() or not (root / "lr").is_dir():
        pytest.skip(f"Set5 not found at {root} (set UPSTEP_DATA to the shared data folder)")
    names = sorted(p.name for p in (root / "hr").glob("*.png"))
    assert names, f"no HR images in {root / 'hr'}"
    for name in names:
        hr = read_image(root / "hr" / name).rgb[None]
        lr_ref = read_image(root / "lr" / name).rgb[None]
        scale = hr.shape[-1] // lr_ref.shape[-1]
        lr = bicubic(hr, scale)
        assert lr.shape == lr_ref.shape, name
        assert _psnr(lr, lr_ref) > 50, f"{name}: bicubic differs from the reference LR"


def test_avgpool_is_block_mean():
    x = torch.rand(2, 3, 18, 13)  # not multiples of 4: cropped to 16 x 12
    lr = avgpool(x, 4)
    assert lr.shape == (2, 3, 4, 3)
    blocks = x[..., :16, :12].reshape(2, 3, 4, 4, 3, 4).mean(dim=(3, 5))
    assert torch.allclose(lr, torch.round(blocks * 255) / 255, atol=1e-6)
    assert torch.equal(degrade(x, 4, "avgpool"), lr)
    assert {"bicubic", "avgpool", "realesrgan"} <= set(pipelines)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(x, 4, "nope")


# -- Real-ESRGAN: the whole pipeline ----------------------------------------------------------------

def test_realesrgan_deterministic_shape_and_range():
    hr = _texture(2, h=66, w=70)  # cropped to 64 x 68
    a = R.realesrgan(hr, 4, torch.Generator().manual_seed(7))
    b = degrade(hr, 4, "realesrgan", generator=torch.Generator().manual_seed(7))
    c = R.realesrgan(hr, 4, torch.Generator().manual_seed(8))
    assert a.shape == (2, 3, 16, 17)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, torch.round(a * 255) / 255)  # 8-bit levels
    assert torch.isfinite(a).all()


def test_realesrgan_chw_and_gray():
    lr = R.realesrgan(_texture(1)[0], 2, torch.Generator().manual_seed(0))
    assert lr.shape == (3, 32, 32)
    gray = R.realesrgan(_texture(1, c=1), 4, torch.Generator().manual_seed(0))
    assert gray.shape == (1, 1, 16, 16)


# -- stages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", [1, 2, "final"])
def test_kernels_sum_to_one(stage):
    k = R.random_kernels(torch.Generator().manual_seed(0), 256, stage)
    assert k.shape == (256, 21, 21)
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(256), atol=1e-5)
    # not all identical: the draws really vary
    assert (k - k[:1]).abs().amax() > 1e-3


@pytest.mark.parametrize("sigma", [1.0, 2.0, 2.5])
def test_isotropic_gaussian_variance(sigma):
    k = R.gaussian_kernel(21, sigma).double()
    ax = torch.arange(21, dtype=torch.float64) - 10
    var_x = (k.sum(0) * ax**2).sum().item()
    var_y = (k.sum(1) * ax**2).sum().item()
    assert abs(var_x - sigma**2) < 0.05 * sigma**2
    assert abs(var_y - sigma**2) < 0.05 * sigma**2
    assert abs((k.sum(0) * ax).sum().item()) < 1e-9  # centred


def test_kernel_shapes_follow_their_formulas():
    # anisotropic, rotated 90 degrees: the long axis moves from x to y
    k0 = R.gaussian_kernel(21, 3.0, 1.0, 0.0).double()
    k90 = R.gaussian_kernel(21, 3.0, 1.0, math.pi / 2).double()
    ax = torch.arange(21, dtype=torch.float64) - 10
    assert (k0.sum(0) * ax**2).sum() > 4 * (k0.sum(1) * ax**2).sum()
    assert torch.allclose(k90, k0.T, atol=1e-6)
    # beta = 1 generalised Gaussian is the Gaussian; the plateau is flatter on top
    assert torch.allclose(R.generalized_gaussian_kernel(15, 2.0, beta=1.0), R.gaussian_kernel(15, 2.0), atol=1e-7)
    p = R.plateau_kernel(15, 2.0, beta=2.0)
    assert p[7, 8] / p[7, 7] > R.gaussian_kernel(15, 2.0)[7, 8] / R.gaussian_kernel(15, 2.0)[7, 7]
    # zero outside the kernel size when padded
    k = R.sinc_kernel(7, math.pi / 2, pad_to=21)
    assert k.shape == (21, 21) and k[:7].abs().sum() == 0 and k[7:14, 7:14].abs().sum() > 0
    assert k.min() < 0  # sinc rings


def test_gaussian_noise_std():
    x = torch.full((2, 3, 128, 128), 0.5)
    sigma = 10.0
    y = R.add_gaussian_noise(x, sigma, gray=torch.tensor([False, True]), generator=torch.Generator().manual_seed(0))
    std = (y - x).std(dim=(1, 2, 3))
    assert torch.all((std - sigma / 255).abs() < 0.1 * sigma / 255), std * 255
    assert torch.equal(y[1, 0], y[1, 1]) and torch.equal(y[1, 1], y[1, 2])  # gray noise: same on all channels
    assert not torch.equal(y[0, 0], y[0, 1])


def test_poisson_noise_std_follows_signal():
    # 256 distinct levels in the first row -> count scale v = 256; noise std = scale * sqrt(p / v)
    x = torch.cat([torch.full((1, 3, 96, 256), 0.1), torch.full((1, 3, 96, 256), 0.4)])
    x[:, :, 0, :] = torch.arange(256) / 255
    scale = 2.0
    y = R.add_poisson_noise(x, scale, generator=torch.Generator().manual_seed(0))
    p = torch.round(torch.tensor([0.1, 0.4]) * 255) / 255
    std = (y - x)[..., 1:, :].std(dim=(1, 2, 3))
    expected = scale * torch.sqrt(p / 256)
    assert torch.all((std - expected).abs() < 0.1 * expected), (std, expected)
    assert 0 <= y.min() and y.max() <= 1


def test_random_noise_is_seeded_and_nonzero():
    x = torch.full((4, 3, 32, 32), 0.5)
    a = R.random_noise(x, torch.Generator().manual_seed(3), 1)
    b = R.random_noise(x, torch.Generator().manual_seed(3), 1)
    assert torch.equal(a, b) and not torch.equal(a, x)


def test_jpeg_quality_orders_distortion():
    # luminance texture with a colour tint (colour noise would be dominated by 4:2:0 chroma loss)
    x = (_texture(1, c=1, h=60, w=72) * torch.tensor([0.9, 0.8, 0.6]).view(1, 3, 1, 1) + 0.05)
    y30, y95 = R.jpeg(x, 30.0), R.jpeg(x, 95.0)  # 60 x 72: padded to 16s and cropped back
    assert y30.shape == y95.shape == x.shape
    e30, e95 = (y30 - x).abs().mean(), (y95 - x).abs().mean()
    assert e30 > 3 * e95 > 0
    # much nearer a real codec (Pillow/libjpeg) at the same quality than the input is (not equal:
    # the differentiable codec rounds softly and pads/filters chroma its own way)
    arr = np.round(x[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=30)
    ref = torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    assert (y30 - ref).abs().mean() < 0.4 * e30


def test_downscale_resize_uses_drawn_factor():
    cfg = dataclasses.replace(R.RealESRGANConfig(), resize_prob=(0.0, 1.0, 0.0))  # always down
    x = torch.rand(1, 3, 64, 80)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        factor, mode = R.draw_resize(_clone(g), 1, cfg)
        y = R.random_resize(x, g, 1, cfg)
        assert 0.15 <= factor <= 1 and mode in R.RESIZE_MODES
        assert y.shape[-2:] == (int(64 * factor), int(80 * factor))


def test_random_blur_keeps_flat_image_and_shape():
    x = torch.full((3, 3, 40, 40), 0.3)
    y = R.random_blur(x, torch.Generator().manual_seed(0), 1)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-5)  # kernels sum to 1


# -- CLI ---------------------------------------------------------------------------------------------

def _write_pngs(folder, n=2, size=(40, 36)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"im{i}.png")


def test_cli_degrade_is_byte_identical(tmp_path, capsys):
    _write_pngs(tmp_path / "hr")
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        assert main(["degrade", str(tmp_path / "hr"), "-o", str(out), "--scale", "4", "--seed", "5",
                     "--no-progress"]) == 0
    assert str(outs[0] / "LR") in capsys.readouterr().out
    for sub in ("HR", "LR"):
        names = sorted(p.name for p in (outs[0] / sub).iterdir())
        assert names == ["im0.png", "im1.png"]
        for name in names:
            assert (outs[0] / sub / name).read_bytes() == (outs[1] / sub / name).read_bytes()
    assert Image.open(outs[0] / "HR" / "im0.png").size == (40, 36)
    assert Image.open(outs[0] / "LR" / "im0.png").size == (10, 9)
    # another seed: other LR bytes
    assert main(["degrade", str(tmp_path / "hr"), "-o", str(tmp_path / "c"), "--seed", "6", "--no-progress"]) == 0
    assert (tmp_path / "c" / "LR" / "im0.png").read_bytes() != (outs[0] / "LR" / "im0.png").read_bytes()


def test_cli_degrade_reports_bad_file(tmp_path, capsys):
    _write_pngs(tmp_path / "hr")
    (tmp_path / "hr" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    out = tmp_path / "out"
    rc = main(["degrade", str(tmp_path / "hr"), "-o", str(out), "--pipeline", "bicubic", "--no-progress"])
    assert rc == 1
    assert "broken.png" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "LR").iterdir()) == ["im0.png", "im1.png"]
    assert sorted(p.name for p in (out / "HR").iterdir()) == ["im0.png", "im1.png"]


# -- Real-ESRGAN: statistics over many seeds against the published configuration ----------------

# Real-ESRGAN's released options (options/train_realesrgan_x4plus.yml), typed here independently
# of RealESRGANConfig so a wrong default there fails.
PUBLISHED = {
    1: {"resize_prob": (0.2, 0.7, 0.1), "resize_range": (0.15, 1.5), "gaussian_noise_prob": 0.5,
        "noise_range": (1, 30), "poisson_scale_range": (0.05, 3), "gray_noise_prob": 0.4,
        "jpeg_range": (30, 95)},
    2: {"second_blur_prob": 0.8, "resize_prob": (0.3, 0.4, 0.3), "resize_range": (0.3, 1.2),
        "gaussian_noise_prob": 0.5, "noise_range": (1, 25), "poisson_scale_range": (0.05, 2.5),
        "gray_noise_prob": 0.4, "jpeg_range": (30, 95)},
    "final_sinc_prob": 0.8,
}


def _near(freq: float, p: float, n: int) -> bool:
    """Within 4.5 binomial standard deviations (a false alarm about once in 150,000 runs)."""
    return abs(freq - p) <= 4.5 * math.sqrt(p * (1 - p) / n) + 1e-9


def _in_range(values, lo, hi, n_expected_gap=0.05):
    """All draws inside [lo, hi] and both ends reached to within 5% of the width."""
    v = torch.as_tensor(values, dtype=torch.float64)
    width = hi - lo
    return bool(v.min() >= lo - 1e-9 and v.max() <= hi + 1e-9 and v.min() < lo + n_expected_gap * width
                and v.max() > hi - n_expected_gap * width)


def test_realesrgan_draws_follow_the_published_configuration(monkeypatch):
    """Run the whole pipeline for 300 seeds (8 images each) with its pixel operations replaced by
    recorders, and check every random choice against the published configuration: the branch
    probabilities of resize (up/down/keep) and noise (Gaussian/Poisson, gray), the second-order
    blur skip rate, the final-stage sinc rate and order, and every range."""
    log = []
    identity = R.identity_kernel(1)[0]
    real_draw = R.draw_resize
    monkeypatch.setattr(R, "draw_resize", lambda g, stage, cfg=None: log.append(
        ("draw", stage, *real_draw(g, stage, cfg))) or log[-1][2:])
    monkeypatch.setattr(R, "resize", lambda x, size, mode: log.append(("resize", tuple(size), mode))
                        or torch.zeros(*x.shape[:2], max(1, int(size[0])), max(1, int(size[1]))))
    monkeypatch.setattr(R, "blur", lambda x, k: log.append(("blur", k)) or x)
    monkeypatch.setattr(R, "jpeg", lambda x, q, rounding="soft": log.append(("jpeg", torch.as_tensor(q).reshape(-1))) or x)
    monkeypatch.setattr(R, "add_gaussian_noise", lambda x, s, gray=False, generator=None: log.append(
        ("gauss", torch.as_tensor(s).reshape(-1), torch.as_tensor(gray).reshape(-1))) or x)
    monkeypatch.setattr(R, "add_poisson_noise", lambda x, s, gray=False, generator=None: log.append(
        ("poisson", torch.as_tensor(s).reshape(-1), torch.as_tensor(gray).reshape(-1))) or x)

    runs, n = 300, 8
    stats = {1: {"factor": [], "gauss": [], "poisson": [], "gray": [], "n_gauss": 0, "jpeg": []},
             2: {"factor": [], "gauss": [], "poisson": [], "gray": [], "n_gauss": 0, "jpeg": []}}
    final_sinc, resize_first, final_modes = 0, 0, []
    hr = torch.rand(n, 3, 64, 64)
    for seed in range(runs):
        log.clear()
        R.realesrgan(hr, 4, torch.Generator().manual_seed(seed))
        kinds = [e[0] for e in log]
        # order: blur resize noise jpeg | blur resize noise | final (resize+blur, jpeg in either order)
        blurs = [e for e in log if e[0] == "blur"]
        draws = [e for e in log if e[0] == "draw"]
        jpegs = [e for e in log if e[0] == "jpeg"]
        assert len(blurs) == 3 and len(draws) == 2 and len(jpegs) == 2, kinds
        stage_of_noise = 1
        for e in log:
            if e[0] == "jpeg":
                stage_of_noise = 2
            if e[0] in ("gauss", "poisson"):
                st = stats[stage_of_noise]
                st[e[0]] += e[1].tolist()
                st["gray"] += e[2].tolist()
                st["n_gauss"] += len(e[1]) if e[0] == "gauss" else 0
        for stage, d in zip((1, 2), draws):
            assert d[1] == stage
            stats[stage]["factor"].append(d[2])
        resizes = [e for e in log if e[0] == "resize"]
        # order 2 resizes relative to the LR size (16 x 16), the final stage to exactly the LR size
        assert resizes[1][1] == (int(16 * draws[1][2]), int(16 * draws[1][2]))
        assert resizes[-1][1] == (16, 16)
        stats[1]["jpeg"] += jpegs[0][1].tolist()
        stats[2]["jpeg"] += jpegs[1][1].tolist()
        final_sinc += int(sum(not torch.equal(k, identity) for k in blurs[2][1]))
        tail = [k for k in kinds if k in ("resize", "blur", "jpeg")][-3:]
        assert tail in (["resize", "blur", "jpeg"], ["jpeg", "resize", "blur"]), tail
        resize_first += tail[0] == "resize"
        final_modes.append(resizes[-1][2])

    N = runs * n
    for stage in (1, 2):
        pub, st = PUBLISHED[stage], stats[stage]
        f = torch.tensor(st["factor"], dtype=torch.float64)
        for share, p in zip(((f > 1).double().mean(), (f < 1).double().mean(), (f == 1).double().mean()),
                            pub["resize_prob"]):
            assert _near(float(share), p, runs), (stage, float(share), p)
        assert _in_range(f[f != 1], *pub["resize_range"]), stage
        assert _near(st["n_gauss"] / N, pub["gaussian_noise_prob"], N), stage
        assert _near(sum(st["gray"]) / N, pub["gray_noise_prob"], N), stage
        assert _in_range(st["gauss"], *pub["noise_range"]), stage
        assert _in_range(st["poisson"], *pub["poisson_scale_range"]), stage
        assert _in_range(st["jpeg"], *pub["jpeg_range"]), stage
    assert _near(final_sinc / N, PUBLISHED["final_sinc_prob"], N)
    assert _near(resize_first / runs, 0.5, runs)
    for mode in R.RESIZE_MODES:
        assert _near(final_modes.count(mode) / runs, 1 / 3, runs), mode


def test_realesrgan_blur_skip_and_sinc_rates():
    """The same draws under a config that never skips (or never uses a sinc) isolate each
    decision: the kernels that change are exactly the skipped (sinc) ones. (A kernel can also be
    an impulse by itself, e.g. a generalised Gaussian with small sigma and large beta, so counting
    impulses would not measure the skip rate.)"""
    n, cfg = 4000, R.RealESRGANConfig()
    never_skip = dataclasses.replace(cfg, second_blur_prob=1.0)
    identity = R.identity_kernel(1)[0]
    k2 = R.random_kernels(torch.Generator().manual_seed(0), n, 2, cfg)
    k2_all = R.random_kernels(torch.Generator().manual_seed(0), n, 2, never_skip)
    changed = [not torch.equal(a, b) for a, b in zip(k2, k2_all)]
    assert all(torch.equal(k, identity) for k, c in zip(k2, changed) if c)  # a skip is an impulse
    assert _near(sum(changed) / n, 1 - PUBLISHED[2]["second_blur_prob"], n)
    for stage in (1, 2):
        no_sinc = dataclasses.replace(never_skip, sinc_prob=0.0, sinc_prob2=0.0)
        a = R.random_kernels(torch.Generator().manual_seed(1), n, stage, never_skip)
        b = R.random_kernels(torch.Generator().manual_seed(1), n, stage, no_sinc)
        assert _near(sum(not torch.equal(x, y) for x, y in zip(a, b)) / n, 0.1, n), stage  # sinc_prob


def test_degradation_mixture_picks_one_pipeline_per_image():
    hr = _texture(n=200, h=16, w=16)
    mix = {"bicubic": 0.3, "avgpool": 0.7}
    lr = degrade(hr, 4, mix, torch.Generator().manual_seed(0))
    assert torch.equal(lr, degrade(hr, 4, mix, torch.Generator().manual_seed(0)))  # seeded
    b, a = bicubic(hr, 4), avgpool(hr, 4)
    is_b = torch.tensor([torch.equal(x, y) for x, y in zip(lr, b)])
    is_a = torch.tensor([torch.equal(x, y) for x, y in zip(lr, a)])
    assert bool((is_b ^ is_a).all())  # every image is exactly one of the two
    assert abs(float(is_b.double().mean()) - 0.3) < 4.5 * math.sqrt(0.21 / 200)
    assert degrade(hr[0], 4, mix, torch.Generator().manual_seed(1)).shape == b[0].shape  # CHW too
    with pytest.raises(ValueError, match="weights must be"):
        degrade(hr, 4, {"bicubic": 0.5, "avgpool": -0.5})
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(hr, 4, {"bicubic": 0.5, "nope": 0.5})


@pytest.mark.parametrize("shape,size", [((1, 3, 37, 50), (148, 200)), ((2, 3, 128, 96), (32, 24)),
                                        ((1, 3, 100, 100), (77, 133)), ((1, 1, 1, 5), (4, 20)),
                                        ((1, 3, 150, 300), (600, 1200))])
def test_banded_imresize_equals_the_dense_weight_matrices(shape, size):
    """imresize applies MATLAB's weight matrices band by band; the dense products give the same image."""
    from upstep.degrade.resize import _weight_matrix, imresize

    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    (h, w), (H, W) = shape[-2:], size
    dense = torch.einsum("oh,nchw,pw->ncop", _weight_matrix(h, H, H / h, True), x, _weight_matrix(w, W, W / w, True))
    assert torch.allclose(imresize(x, size=size), dense, atol=1e-12)
    assert torch.allclose(imresize(x.float(), size=size), dense.float(), atol=1e-5)
