"""ResShift (co-learning teacher): schedule, forward marginal, posterior and the deterministic
sampler against closed forms; the model wrapper; a tiny teacher training run that exports a
model ``load_model`` and ``upstep.load`` run like any other."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

import upstep
from conftest import make_image_folder
from upstep.config import load_config
from upstep.diffusion.resshift import (ResShiftSchedule, ddim_sample, posterior_sample_loop,
                                       sample_timesteps)
from upstep.diffusion.resshift_model import ResShiftSRModel
from upstep.errors import UpstepError
from upstep.model import load_model, save_model
from upstep.train.loop import train

S = ResShiftSchedule()  # T = 15, kappa = 2, sqrt(eta) from 0.04 to 0.999, power 0.3


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: with 2 intra-op threads on a CPU shared with other jobs, OpenMP spin-waits
    made single sampler calls ~100x slower (measured 8 s vs 0.02 s); one thread is fastest."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _xy(shape=(3, 4, 5, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64),
            torch.randn(shape, generator=g, dtype=torch.float64),
            torch.randn(shape, generator=g, dtype=torch.float64))


# ---- schedule ---------------------------------------------------------------------------
def test_schedule_endpoints_and_monotone():
    b = S.sqrt_etas()
    assert b.shape == (16,) and b[0] == 0
    assert math.isclose(float(b[1]), 0.04, rel_tol=1e-12)
    assert math.isclose(float(b[15]), 0.999, rel_tol=1e-12)
    assert torch.all(b[1:] > b[:-1])
    eta = S.etas()
    assert eta[0] == 0 and torch.allclose(eta, b**2)
    # geometric in ((t-1)/(T-1))^p: log b is linear in that variable
    u = ((torch.arange(1, 16, dtype=torch.float64) - 1) / 14) ** 0.3
    assert torch.allclose(torch.log(b[1:]), math.log(0.04) + u * math.log(0.999 / 0.04))
    a = S.alphas()
    assert torch.all(a[1:] > 0) and torch.isclose(a[1:].sum(), eta[15])
    with pytest.raises(ValueError):
        ResShiftSchedule(T=1)
    with pytest.raises(ValueError):
        ResShiftSchedule(sqrt_eta_1=0.5, sqrt_eta_T=0.4)


def test_timesteps_grid_and_training_times():
    assert S.timesteps(15) == list(range(15, 0, -1))
    assert S.timesteps(1) == [15]
    for n in range(1, 16):
        ts = S.timesteps(n)
        assert len(ts) == n and ts[0] == 15 and ts[-1] >= 1
        assert all(a > b for a, b in zip(ts, ts[1:]))
    for bad in (0, 16):
        with pytest.raises(ValueError):
            S.timesteps(bad)
    g = torch.Generator().manual_seed(0)
    t = sample_timesteps(2000, 15, g)
    assert t.min() == 1 and t.max() == 15 and len(t.unique()) == 15
    assert torch.all(sample_timesteps(50, 15, g, p_terminal=1.0) == 15)


# ---- forward process and posterior ------------------------------------------------------
def test_forward_marginal_formula_and_moments():
    x0, y, eps = _xy()
    t = torch.tensor([1, 7, 15])
    eta = S.etas()[t].reshape(-1, 1, 1, 1)
    want = x0 + eta * (y - x0) + 2.0 * eta.sqrt() * eps
    assert torch.allclose(S.q_sample(x0, y, t, eps), want, atol=1e-12)
    # int t and the sampler's start
    assert torch.allclose(S.q_sample(x0, y, 15, eps), x0 + S.etas()[15] * (y - x0) + 2 * 0.999 * eps)
    assert torch.allclose(S.prior_sample(y, eps), y + 2.0 * 0.999 * eps)
    # Monte Carlo: per-pixel mean x0 + eta (y - x0), variance kappa^2 eta
    g = torch.Generator().manual_seed(1)
    n = 200_000
    x0s, ys = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-0.5, dtype=torch.float64)
    for tt in (1, 5, 15):
        xt = S.q_sample(x0s.expand(n), ys.expand(n), tt, torch.randn(n, generator=g, dtype=torch.float64))
        e = float(S.etas()[tt])
        sd = 2 * math.sqrt(e)
        assert abs(float(xt.mean()) - (0.7 + e * (-1.2))) < 5 * sd / math.sqrt(n)
        assert abs(float(xt.var()) / (4 * e) - 1) < 0.02


def test_posterior_is_the_gaussian_conditional_of_the_forward_process():
    """q(x_{t-1} | x_t, x_0) from the joint Gaussian of (x_{t-1}, x_t) given x_0, y:
    x_t = x_{t-1} + alpha_t (y - x_0) + kappa sqrt(alpha_t) n, so Cov = kappa^2 eta_{t-1}."""
    x0, y, xt = _xy(seed=2)
    k2, eta = 4.0, S.etas()
    for t in range(1, 16):
        e_t, e_p = float(eta[t]), float(eta[t - 1])
        m_p, m_t = x0 + e_p * (y - x0), x0 + e_t * (y - x0)
        cond_mean = m_p + (k2 * e_p) / (k2 * e_t) * (xt - m_t)
        cond_var = k2 * e_p - (k2 * e_p) ** 2 / (k2 * e_t)
        mean, var = S.posterior_mean_var(xt, x0, t)
        assert torch.allclose(mean, cond_mean, atol=1e-12), t
        assert torch.allclose(var, torch.full_like(var, cond_var), atol=1e-12), t
        # tensor t gives the same as int t
        mean2, var2 = S.posterior_mean_var(xt, x0, torch.full((3,), t))
        assert torch.allclose(mean2, mean) and torch.allclose(var2, var)
    mean, var = S.posterior_mean_var(xt, x0, 1)  # eta_0 = 0: the last step lands on x_0
    assert torch.equal(var, torch.zeros_like(var)) and torch.allclose(mean, x0)


def test_posterior_samples_have_the_previous_marginal():
    """x_t ~ q(x_t | x_0), then x_{t-1} ~ q(x_{t-1} | x_t, x_0) must be ~ q(x_{t-1} | x_0)."""
    g = torch.Generator().manual_seed(3)
    n = 200_000
    x0, y = torch.full((n,), 0.3, dtype=torch.float64), torch.full((n,), -0.8, dtype=torch.float64)
    for t in (2, 8, 15):
        xt = S.q_sample(x0, y, t, torch.randn(n, generator=g, dtype=torch.float64))
        xp = S.posterior_sample(xt, x0, t, torch.randn(n, generator=g, dtype=torch.float64))
        e = float(S.etas()[t - 1])
        assert abs(float(xp.mean()) - (0.3 + e * (-1.1))) < 5 * 2 * math.sqrt(e) / math.sqrt(n)
        assert abs(float(xp.var()) / (4 * e) - 1) < 0.02


# ---- deterministic (SinSR) sampler ------------------------------------------------------
def test_kmj_coefficients():
    g = torch.Generator().manual_seed(4)
    x0, y, xt = (torch.randn(10, generator=g, dtype=torch.float64) for _ in range(3))
    eta = S.etas()
    for t in range(1, 16):
        k, m, j = S.ddim_coefficients(t, 0)
        assert (k, m, j) == (1.0, 0.0, 0.0)
        for s in range(1, t):
            k, m, j = S.ddim_coefficients(t, s)
            assert math.isclose(k + m + j, 1.0, abs_tol=1e-12)
            # x_s = x0 + eta_s (y - x0) + kappa sqrt(eta_s) eps_hat, eps_hat implied by x_t
            eps_hat = (xt - x0 - eta[t] * (y - x0)) / (2 * eta[t].sqrt())
            want = x0 + eta[s] * (y - x0) + 2 * eta[s].sqrt() * eps_hat
            assert torch.allclose(k * x0 + m * xt + j * y, want, atol=1e-12)
    for t, s in ((3, 3), (2, 5), (16, 1), (1, -1)):
        with pytest.raises(ValueError):
            S.ddim_coefficients(t, s)


def _oracle(x0, calls=None):
    def den(x_t, y, t):
        assert t.dtype == torch.long and t.shape == (x_t.shape[0],) and 1 <= int(t.min()) <= int(t.max()) <= 15
        if calls is not None:
            calls.append(int(t[0]))
        return x0
    return den


@pytest.mark.parametrize("steps", [15, 7, 4, 2, 1])
def test_deterministic_sampler_with_a_perfect_denoiser(steps):
    x0, y, eps = (v.float() for v in _xy(seed=5))
    calls = []
    out = ddim_sample(_oracle(x0, calls), S.prior_sample(y, eps), y, S, steps)
    assert torch.allclose(out, x0, atol=1e-5)
    assert calls == S.timesteps(steps)
    # started on the forward marginal, every visited state stays on it with the same eps
    x0d, yd, epsd = _xy(seed=5)
    _, traj = ddim_sample(_oracle(x0d), S.q_sample(x0d, yd, 15, epsd), yd, S, steps, return_trajectory=True)
    assert [s for s, _ in traj] == [15] + S.timesteps(steps)[1:] + [0]
    for s, x in traj:
        assert torch.allclose(x, S.q_sample(x0d, yd, s, epsd) if s else x0d, atol=1e-10), s


def test_stochastic_sampler_with_a_perfect_denoiser_lands_on_x0():
    x0, y, eps = (v.float() for v in _xy(seed=6))
    out = posterior_sample_loop(_oracle(x0), S.prior_sample(y, eps), y, S, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-5)


# ---- the model wrapper ------------------------------------------------------------------
TINY = {"kind": "resshift", "scale": 4, "default_steps": 15,
        "resshift": {"T": 15, "kappa": 2.0, "sqrt_eta_1": 0.04, "sqrt_eta_T": 0.999, "power": 0.3,
                     "x0_param": "residual", "normalize_input": True},
        "autoencoder": {"kind": "pixel_unshuffle", "factor": 4},
        "unet": {"latent_channels": 48, "block_out_channels": [16, 32], "layers_per_block": 1,
                 "norm_num_groups": 8}}


def test_untrained_residual_model_is_bicubic_at_any_step_count():
    """x0_hat = y when the output layer is zero, so every sampler step returns the bicubic
    upscale's latent: the wiring (prior, grid, k/m/j, decode) against a closed form."""
    model = ResShiftSRModel.from_config(TINY).eval()
    lr = torch.rand(1, 3, 8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    bic = model.upsample_lr(lr)
    for steps in (1, 3, 15):
        out = model.upscale_tensor(lr, steps=steps, generator=torch.Generator().manual_seed(1))
        assert out.shape == (1, 3, 32, 48)
        assert torch.allclose(out, bic, atol=1e-5), steps
    with pytest.raises(UpstepError, match="1..15 steps"):
        model.upscale_tensor(lr, steps=16)


def test_one_step_equals_one_network_call_at_T_and_config_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ResShiftSRModel.from_config({**TINY, "default_steps": 1}).eval()
    torch.nn.init.normal_(model.unet.unet.conv_out.weight, std=0.02)
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    noise = torch.randn(1, 48, 8, 8)
    y = model.encode_cond(model.upsample_lr(lr))
    x_T = y + 2.0 * 0.999 * noise
    with torch.no_grad():
        x0 = model.predict_x0(x_T, y, torch.full((1,), 15))
    out = model.upscale_tensor(lr, noise=noise)  # default_steps = 1
    assert torch.allclose(out, model.autoencoder.decode(x0), atol=1e-6)
    assert not torch.allclose(out, model.upsample_lr(lr), atol=1e-3)  # the network acts
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert isinstance(again, ResShiftSRModel) and again.default_steps == 1
    assert again.schedule == model.schedule and again.x0_param == "residual"
    assert torch.equal(again.upscale_tensor(lr, noise=noise), out)


# ---- a tiny teacher training run ---------------------------------------------------------


def teacher_cfg(data_dir, **train_over):
    cfg = load_config("resshift_teacher_tiny.json")
    cfg["data"].update(train_dirs=[str(data_dir)], crop=32, val_fraction=0.5, val_images=1)
    cfg["train"].update(steps=3, checkpoint_every=3, val_every=3)
    cfg["train"].update(train_over)
    return cfg


def test_teacher_step_is_resshifts_x0_loss_and_lowers_it():
    """The teacher's loss is || f(x_t, y, t) - x_0 ||^2 with x_t from ResShift's forward marginal
    (x_t = x_0 + eta_t (y - x_0) + kappa sqrt(eta_t) eps), written out here on the draws the step
    makes; 30 steps on one batch lower it."""
    from upstep.recipes import build_recipe
    from upstep.recipes.resshift_teacher import encode_pair
    from upstep.train.ema import EMA
    from upstep.train.loop import make_accelerator

    cfg = load_config("resshift_teacher_tiny.json")
    cfg["train"]["lr"] = 3e-3
    torch.manual_seed(0)  # the U-Net's initial weights
    r = build_recipe(cfg, make_accelerator(cfg["train"]))
    r.wrapped = dict(r.trainable)
    r.emas = {n: EMA(r.trainable[n], 0.9, 1) for n in r.ema_names}
    torch.manual_seed(0)  # a non-zero output layer, so the prediction depends on x_t
    torch.nn.init.normal_(r.model.unet.unet.conv_out.weight, std=0.05)
    hr01 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x0, y, _, _ = encode_pair(r.model, hr01, "bicubic", g)
        t = sample_timesteps(2, 15, g)
        eps = torch.randn(x0.shape, generator=g)
        eta = S.etas()[t].view(-1, 1, 1, 1).float()
        x_t = x0 + eta * (y - x0) + 2.0 * eta.sqrt() * eps
        expected = (r.model.predict_x0(x_t, y, t) - x0).pow(2).mean()
    first = r.train_step(0, hr01, torch.Generator().manual_seed(1))["loss"]
    assert first == pytest.approx(float(expected), rel=1e-5)
    for step in range(1, 30):
        last = r.train_step(step, hr01, torch.Generator().manual_seed(1))["loss"]
    assert last < 0.7 * first, (first, last)


def test_teacher_trains_exports_and_loads_like_any_model(tmp_path):
    import json

    data = make_image_folder(tmp_path / "data")
    out = train(teacher_cfg(data), tmp_path / "run", progress=False)
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(logs) == 3 and all(math.isfinite(r["loss"]) for r in logs)
    assert {"val_psnr", "val_psnr_1step", "val_psnr_bicubic"} <= logs[-1].keys()

    model = load_model(out)
    assert isinstance(model, ResShiftSRModel) and model.default_steps == 15
    assert model.info["recipe"] == "resshift_teacher"
    lr = torch.rand(2, 3, 8, 12) * 2 - 1
    for steps in (None, 1, 4):
        hr = model.upscale_tensor(lr, steps=steps, generator=torch.Generator().manual_seed(0))
        assert hr.shape == (2, 3, 32, 48) and torch.isfinite(hr).all()

    up = upstep.load(out, device="cpu", tile=16, overlap=4)
    for mode, size in (("RGB", (13, 10)), ("L", (9, 7))):
        img = Image.fromarray((np.random.default_rng(1).random((size[1], size[0], 3)) * 255).astype(np.uint8))
        res = up.upscale(img.convert(mode), steps=1)
        assert res.size == (size[0] * 4, size[1] * 4) and res.mode == mode
