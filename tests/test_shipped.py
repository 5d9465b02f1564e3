"""The model that ships in the package: present, small, safetensors-only, better than bicubic
at one step, seamless when tiled, and `upstep upscale --demo` works end to end."""
import json

import pytest
import torch

import upstep
from upstep.cli import main
from upstep.evaluate.sets import open_set
from upstep.metrics import psnr, quantize
from upstep.paths import data_root, package_weights_dir

SHIPPED = package_weights_dir() / "default-x4"


def test_shipped_model_is_small_and_documented():
    assert "default-x4" in upstep.available_models()
    files = sorted(p.name for p in SHIPPED.iterdir())
    assert files == ["config.json", "model.safetensors"]  # no pickles
    total = sum(p.stat().st_size for p in package_weights_dir().rglob("*") if p.is_file())
    assert total < 40 * 2**20
    info = json.loads((SHIPPED / "config.json").read_text())["info"]
    assert info["trained_with"].startswith("upstep train configs/")  # made by our own recipe


@pytest.mark.skipif(not (data_root() / "eval" / "set5").is_dir(), reason="benchmark data not found")
def test_one_step_beats_bicubic_on_set5():
    up = upstep.load("default-x4", device="cpu")
    s = open_set("set5")
    gains = []
    for item in s.items:
        lr, hr = s.load(item, 4)
        sr = quantize(up.upscale_tensor(lr, steps=1))
        bic = quantize(up.model.upsample_lr(lr))
        gains.append(float(psnr(sr, hr, crop_border=4) - psnr(bic, hr, crop_border=4)))
    assert sum(gains) / len(gains) > 0.3, gains  # measured on the full sets in docs/results/eval


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
