"""``upstep.evaluate.methods``: named LR -> SR callables measured with ``upstep eval``'s records."""
import numpy as np
import pytest
import torch
from PIL import Image

from upstep.evaluate.ablation import paired_claim, per_image
from upstep.evaluate.methods import evaluate_methods, last_output
from upstep.peers import BicubicPeer


@pytest.fixture
def data_root(tmp_path):
    """eval/pairs: 3 smooth HR images (no LR: other scales than x4 are made from the HR)."""
    root = tmp_path / "data"
    (root / "eval/pairs/hr").mkdir(parents=True)
    for i in range(3):
        hr = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(i)),
                                             size=(60, 48), mode="bicubic").clamp(0, 1)
        Image.fromarray((hr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(
            root / "eval/pairs/hr" / f"im{i}.png")
    return root


def test_methods_are_measured_per_image_and_resume(tmp_path, data_root):
    calls = {"bicubic": 0, "noisy": 0}
    peer = BicubicPeer()

    def counted(name, noise):
        def run(lr):
            calls[name] += 1
            sr = peer.upscale(lr, 3)
            return (sr + noise * torch.randn(sr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        return run

    methods = {"bicubic": counted("bicubic", 0.0), "noisy": counted("noisy", 0.1)}
    out = tmp_path / "out"
    res = evaluate_methods(methods, ["pairs"], 3, out, metrics=("psnr",), data_root=data_root, stamp="a",
                           progress=False)
    assert calls == {"bicubic": 3, "noisy": 3}
    clean, noisy = per_image(out, "pairs", "bicubic", "psnr"), per_image(out, "pairs", "noisy", "psnr")
    assert all(noisy[k] < clean[k] - 3 for k in clean)  # 0.1 noise costs far more than 3 dB here
    assert res["sets"]["pairs"]["methods"]["noisy"]["psnr"] == pytest.approx(np.mean(list(noisy.values())))
    assert paired_claim(noisy, clean, higher_is_better=True)["verdict"] == "held"
    evaluate_methods(methods, ["pairs"], 3, out, metrics=("psnr",), data_root=data_root, stamp="a", progress=False)
    assert calls == {"bicubic": 3, "noisy": 3}  # resumed: nothing to do
    evaluate_methods(methods, ["pairs"], 3, out, metrics=("psnr",), data_root=data_root, stamp="b", progress=False)
    assert calls == {"bicubic": 6, "noisy": 6}  # another stamp: other models, measured afresh


def test_last_output_runs_once_per_input():
    n = []
    f = last_output(lambda x: n.append(1) or x * 2)
    a, b = torch.ones(1), torch.zeros(1)
    assert f(a) is f(a) and len(n) == 1
    f(b)
    f(a)
    assert len(n) == 3
