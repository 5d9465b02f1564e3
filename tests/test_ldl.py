"""LDL's artifact term (issue 29): the local variance, the refined artifact map (zero where the
EMA reference is closer to the target), that it singles out grain and not a smooth error, and its
wiring into the perceptual recipe (the EMA generator as the reference, the weight in L_G)."""
import pytest
import torch

from conftest import make_tiny_model
from test_colearn import hr_batch
from test_perceptual import _one_thread, make_perceptual, needs_wheel, perceptual_cfg  # noqa: F401 (fixture)
from upstep.model import save_model
from upstep.nn.ldl import artifact_map, ldl_loss, local_variance


def test_local_variance_matches_the_windowed_variance_by_brute_force():
    x = torch.rand(2, 1, 12, 13, generator=torch.Generator().manual_seed(0))
    w = 5
    p = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    windows = p.unfold(2, w, 1).unfold(3, w, 1)                   # N,1,H,W,w,w
    want = windows.reshape(*windows.shape[:4], -1).var(dim=-1, unbiased=True)
    assert torch.allclose(local_variance(x, w), want, atol=1e-6)


def _scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.full((1, 3, 32, 32), 0.5)
    y[..., :, 16:] = 0.8                                          # one edge, flat elsewhere
    grain = 0.05 * torch.randn(y.shape, generator=g)
    return y, grain


def test_the_map_is_zero_where_the_current_model_is_closer_than_its_ema_and_kept_elsewhere():
    y, grain = _scene()
    sr = y + grain
    ema = y.clone()
    ema[..., :16, :] += 2 * grain[..., :16, :]                   # top half: the EMA is further from y
    m = artifact_map(y, sr, ema)
    assert m.shape == (1, 1, 32, 32)
    assert (m[..., :16, :] == 0).all()                           # top: the current model is closer: not flagged
    assert (m[..., 16:, :] > 0).float().mean() > 0.99            # bottom: the EMA is exact, the grain is new: flagged
    assert torch.equal(m, artifact_map(y, sr, ema))              # a pure function of its inputs


def test_grain_is_penalised_and_a_smooth_error_of_the_same_size_is_not():
    y, grain = _scene(1)
    ema = y.clone()                                              # a stable reference that is exact
    grainy = y + grain
    smooth = y + grain.abs().mean()                              # the same mean L1 error, but flat
    assert abs((grainy - y).abs().mean() - (smooth - y).abs().mean()) < 1e-6
    assert float(ldl_loss(y, smooth, ema)) < 1e-9                # no local variance: not an artifact
    assert float(ldl_loss(y, grainy, ema)) > 1e-5


def test_the_map_carries_no_gradient_and_the_loss_pulls_the_output_towards_the_target():
    y, grain = _scene(2)
    sr = (y + grain).requires_grad_(True)
    loss = ldl_loss(y, sr, y)
    loss.backward()
    m = artifact_map(y, sr.detach(), y)
    want = (m * torch.sign(sr.detach() - y)).expand_as(sr) / sr.numel()   # d mean|M (y - x)| / dx
    assert torch.allclose(sr.grad, want, atol=1e-9)


@needs_wheel
@pytest.mark.parametrize("weight", [0.0, 50.0])
def test_the_perceptual_recipe_adds_ldl_against_its_ema_generator(tmp_path, weight):
    save_model(make_tiny_model(), tmp_path / "start")
    r = make_perceptual(perceptual_cfg(tmp_path / "start", ldl_weight=weight, gan_weight=0.0, feature_weight=0.0))
    hr = hr_batch(seed=3, n=2, size=32)
    for step in range(2):
        r.train_step(step, hr, torch.Generator().manual_seed(5))
    with torch.no_grad():
        L = r.generator_loss(2, hr, torch.Generator().manual_seed(5))["losses"]
    assert torch.isclose(L["generator"], L["l1"] + weight * L["ldl"])
    if weight:
        assert float(L["ldl"]) > 0      # the EMA lags the trained generator: some pixels are flagged
    else:
        assert float(L["ldl"]) == 0


@pytest.mark.parametrize("window", [6, 1, 7.5])
def test_an_unusable_ldl_window_is_refused_in_one_line(tmp_path, window):
    from upstep.errors import ConfigError

    save_model(make_tiny_model(), tmp_path / "start")
    with pytest.raises(ConfigError, match="ldl_window must be an odd whole number"):
        make_perceptual(perceptual_cfg(tmp_path / "start", ldl_weight=1.0, ldl_window=window,
                                       gan_weight=0.0, feature_weight=0.0))
