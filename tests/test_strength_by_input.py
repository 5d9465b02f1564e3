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


def _curve(folder, set_name, lpips_by_s):
    """A strength_curve.py --out folder: results.json naming the set and strengths, and records."""
    import json

    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"sets": {set_name: {}}, "strengths": [0.75, 1.0]}))
    (folder / "records.jsonl").write_text("".join(
        json.dumps({"set": set_name, "method": f"S={s:g}", "image": im, "lpips": v}) + "\n"
        for s, by_image in lpips_by_s.items() for im, v in by_image.items()))
    return folder


def test_main_applies_the_noise_rule_per_image_and_refuses_bad_curves(tmp_path, monkeypatch):
    """Clean LR (σ below the threshold) takes the low strength's LPIPS, noisy LR keeps S = 1's; the
    rule is paired against S = 1. A folder without results.json, a broken records line and a set given
    twice each end in one error that names the folder, and nothing is written."""
    import json

    import numpy as np
    import pytest
    from PIL import Image

    from strength_by_input import main
    from upstep.errors import UpstepError

    lr = tmp_path / "data" / "eval" / "tiny" / "lr"
    lr.mkdir(parents=True)
    rng = np.random.default_rng(0)
    flat = np.full((48, 48, 3), 120, np.uint8)
    for i, sd in enumerate((0, 0, 20, 20)):         # two clean, two noisy LR images
        Image.fromarray(np.clip(flat + rng.normal(0, sd, flat.shape), 0, 255).astype(np.uint8)).save(lr / f"im{i}.png")
    monkeypatch.setenv("UPSTEP_DATA", str(tmp_path / "data"))
    curve = _curve(tmp_path / "curve", "tiny", {0.75: {"im0": 0.1, "im1": 0.2, "im2": 0.6, "im3": 0.7},
                                                1.0: {"im0": 0.3, "im1": 0.3, "im2": 0.4, "im3": 0.4}})
    assert main(["--curve", str(curve), "--thresholds", "2", "--out", str(tmp_path / "out")]) == 0
    r = json.loads((tmp_path / "out" / "results.json").read_text())["sets"]["tiny"]
    rule = r["rule"]["2.0"]
    assert rule["fraction_low"] == 0.5
    assert rule["mean_lpips"] == pytest.approx((0.1 + 0.2 + 0.4 + 0.4) / 4)
    assert rule["vs_S1"]["diff"] == pytest.approx(((0.1 - 0.3) + (0.2 - 0.3)) / 4)
    assert r["best_fixed"] == "S=1" and r["oracle"] == pytest.approx((0.1 + 0.2 + 0.4 + 0.4) / 4)

    broken = _curve(tmp_path / "broken", "tiny", {0.75: {"im0": 0.1}, 1.0: {"im0": 0.3}})
    with open(broken / "records.jsonl", "a") as f:
        f.write("{not json\n")
    for curves, words in (([tmp_path / "nowhere"], "no results.json"), ([broken], "not a JSON record"),
                          ([curve, curve], "in another --curve too")):
        args = [a for c in curves for a in ("--curve", str(c))]
        with pytest.raises(UpstepError, match=words):
            main(args + ["--out", str(tmp_path / "no")])
        assert not (tmp_path / "no").exists()
