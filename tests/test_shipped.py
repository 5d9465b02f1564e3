"""The model that ships in the package: present, small, safetensors-only, better than bicubic
at one step, seamless when tiled, and `upstep upscale --demo` works end to end."""
import json
from pathlib import Path

import pytest
import torch

import upstep
from upstep.cli import main
from upstep.evaluate.sets import open_set
from upstep.metrics import psnr, quantize
from upstep.paths import data_root, package_weights_dir

SHIPPED = package_weights_dir() / "default-x4"
ROOT = Path(__file__).resolve().parents[1]


def test_shipped_models_are_small_and_documented():
    assert "default-x4" in upstep.available_models()
    total = sum(p.stat().st_size for p in package_weights_dir().rglob("*") if p.is_file())
    assert total < 40 * 2**20
    for name in upstep.available_models():
        folder = package_weights_dir() / name
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"], name  # no pickles
        info = json.loads((folder / "config.json").read_text())["info"]
        assert info["trained_with"].startswith("upstep train configs/"), name  # made by our own recipe
        config = ROOT / "configs" / info["trained_with"].split()[2].split("/", 1)[1]
        assert config.is_file(), f"{name}: its training config {config} is not in configs/"


@pytest.mark.parametrize("name", upstep.available_models())
def test_every_shipped_model_upscales_at_its_scale(name):
    up = upstep.load(name, device="cpu")
    assert name.endswith(f"-x{up.scale}")
    g = torch.Generator().manual_seed(0)
    lr = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 5, generator=g), size=(24, 20), mode="bicubic").clamp(0, 1)
    sr = up.upscale_tensor(lr, seed=0)
    assert sr.shape == (1, 3, 24 * up.scale, 20 * up.scale)
    bic = (up.model.upsample_lr(lr * 2 - 1) + 1) / 2
    assert (sr - bic).abs().mean() > 1e-3  # the network acts (an untrained residual model is bicubic)
    assert (sr - bic).abs().mean() < 0.1  # ... and stays an upscaling of this image


@pytest.mark.skipif(not (data_root() / "eval" / "set5").is_dir(), reason="benchmark data not found")
def test_one_step_gain_over_bicubic_on_set5_matches_the_results_file():
    """The README's Set5 gain over bicubic comes from docs/results/eval; this re-measures it.
    Tolerance 0.1 dB: a different CPU's float rounding moves it by ~0.01 dB, and a faster default
    inference path may move it by up to 0.05 dB before it has to be re-evaluated (issue 13's bar);
    a model swapped without re-running the eval, or a broken pipeline, moves it by far more."""
    recorded = json.loads((ROOT / "docs/results/eval/results.json").read_text())
    assert recorded["model"] == "default-x4" and recorded["sets"]["set5"]["images"] == 5
    rows = recorded["sets"]["set5"]["methods"]
    recorded_gain = rows["model@1"]["psnr"] - rows["bicubic"]["psnr"]
    up = upstep.load("default-x4", device="cpu")
    s = open_set("set5")
    gains = []
    for item in s.items:
        lr, hr = s.load(item, 4)
        sr = quantize(up.upscale_tensor(lr, steps=1))
        bic = quantize((up.model.upsample_lr(lr * 2 - 1) + 1) / 2)
        gains.append(float(psnr(sr, hr, crop_border=4) - psnr(bic, hr, crop_border=4)))
    gain = sum(gains) / len(gains)
    assert gain == pytest.approx(recorded_gain, abs=0.1), (gain, recorded_gain)


def test_tiled_equals_untiled_within_a_quantisation_level():
    """A 96x80 LR image fits in one 128-px tile; tiling it into 32-px tiles with 8-px overlap
    must not be visible. The U-Net's receptive field is wider than the overlap, so tiles see
    less context and cannot be bit-identical; the linear blend keeps the difference below half
    an 8-bit level on average (invisible) and below 8 levels anywhere."""
    g = torch.Generator().manual_seed(0)
    lr = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 10, generator=g), size=(96, 80),
                                         mode="bicubic").clamp(0, 1)
    whole = upstep.load("default-x4", device="cpu", tile=128).upscale_tensor(lr, seed=3)
    tiled = upstep.load("default-x4", device="cpu", tile=32, overlap=8).upscale_tensor(lr, seed=3)
    diff = (whole - tiled).abs()
    assert diff.mean() < 0.5 / 255, float(diff.mean() * 255)
    assert diff.max() < 8 / 255, float(diff.max() * 255)


def test_demo_command(tmp_path, capsys):
    assert main(["upscale", "--demo", "-o", str(tmp_path), "--no-progress"]) == 0
    out = list(tmp_path.iterdir())
    assert len(out) == 1 and out[0].suffix == ".png"
    from PIL import Image
    w, h = Image.open(out[0]).size
    w0, h0 = Image.open(package_weights_dir().parent / "assets" / "sample.png").size
    assert (w, h) == (4 * w0, 4 * h0)
    assert str(out[0]) in capsys.readouterr().out
