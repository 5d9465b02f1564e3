"""Schedule and DDIM sampler against closed forms."""
import math

import pytest
import torch

from upstep.diffusion import CosineSchedule, ddim_sample, ddim_timesteps, sample_t


def test_schedule_endpoints_and_monotone_log_snr():
    s = CosineSchedule()
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    a, sg = s.alpha_sigma(t)
    assert torch.allclose(a**2 + sg**2, torch.ones_like(a))
    assert a[0] == 1 and sg[0] == 0
    assert a[-1] == 0 and sg[-1] == 1  # zero terminal SNR, exactly
    lam = s.log_snr(t[1:-1])
    assert torch.all(lam[1:] < lam[:-1])
    assert math.isinf(float(s.log_snr(torch.tensor([1.0]))))


def test_v_parameterisation_round_trip():
    s = CosineSchedule()
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    t = torch.tensor([0.1, 0.4, 0.7, 1.0])
    zt = s.add_noise(z0, eps, t)
    v = s.v_target(z0, eps, t)
    assert torch.allclose(s.z0_from_v(zt, v, t), z0, atol=1e-5)
    assert torch.allclose(s.eps_from_v(zt, v, t), eps, atol=1e-5)


def test_omega_weighting_equals_v_mse_and_is_clipped():
    s = CosineSchedule(omega_max=1e9)
    g = torch.Generator().manual_seed(1)
    z0, eps = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)
    t = torch.tensor([0.2, 0.5, 0.9])
    zt = s.add_noise(z0, eps, t)
    v_hat = torch.randn(3, 8, generator=g)
    z0_err = (s.z0_from_v(zt, v_hat, t) - z0).pow(2).mean(1)
    v_err = (v_hat - s.v_target(z0, eps, t)).pow(2).mean(1)
    assert torch.allclose(s.omega(t) * z0_err, v_err, rtol=1e-4)  # YONOS eq. 2 == v-MSE
    assert float(CosineSchedule(omega_max=5).omega(torch.tensor([1e-4]))) == 5.0
    assert float(s.omega(torch.tensor([1.0]))) == 1.0


def test_unclipped_omega_is_the_papers_weight_everywhere_training_samples():
    """omega_max = None (the paper's 1 + SNR): no t is clipped, even the smallest float32 t that
    torch.rand can draw, and the weighted z0 loss stays the (finite) v-MSE there."""
    from upstep.diffusion.schedule import omega_clip_time
    s = CosineSchedule(omega_max=None)
    t = torch.tensor([2.0**-24, 1e-4, 0.01, 0.3, 0.9], dtype=torch.float64)
    a, sg = s.alpha_sigma(t)
    assert torch.allclose(s.omega(t), 1 + a**2 / sg**2, rtol=1e-12)
    assert float(s.omega(t[:1])) > 1e13
    g = torch.Generator().manual_seed(2)
    z0, eps, v_hat = (torch.randn(5, 16, generator=g, dtype=torch.float64) for _ in range(3))
    zt = s.add_noise(z0, eps, t)
    z0_err = (s.z0_from_v(zt, v_hat, t) - z0).pow(2).mean(1)
    v_err = (v_hat - s.v_target(z0, eps, t)).pow(2).mean(1)
    assert torch.allclose(s.omega(t) * z0_err, v_err, rtol=1e-5)
    # the old ablation clip at 5 changed every t below 0.295; 1000 every t below 0.0201
    assert omega_clip_time(5.0) == pytest.approx(0.2952, abs=1e-4)
    assert float(CosineSchedule(omega_max=5.0).omega(torch.tensor([0.29]))) == 5.0
    assert float(CosineSchedule(omega_max=5.0).omega(torch.tensor([0.30]))) < 5.0
    assert omega_clip_time(None) == 0.0


def test_trailing_grid_starts_at_noisiest_point():
    assert ddim_timesteps(1).tolist() == [1.0, 0.0]
    grid = ddim_timesteps(4)
    assert grid[0] == 1.0 and grid[-1] == 0.0 and len(grid) == 5
    with pytest.raises(ValueError):
        ddim_timesteps(0)


def gaussian_denoiser(mu: float, s2: float, sched: CosineSchedule):
    """Exact v-prediction for data z0 ~ N(mu, s2): posterior mean E[z0 | z_t]."""
    def den(z, t):
        a, sg = (x.reshape(-1, 1) for x in sched.alpha_sigma(t.double()))
        z = z.double()
        var = a**2 * s2 + sg**2
        z0 = mu + a * s2 * (z - a * mu) / var
        eps = (z - a * z0) / sg.clamp_min(1e-12)
        return (a * eps - sg * z0).float()
    return den


def test_one_step_ddim_returns_posterior_mean_at_t1():
    sched = CosineSchedule()
    den = gaussian_denoiser(0.7, 0.25, sched)
    z1 = torch.randn(16, 1, generator=torch.Generator().manual_seed(0))
    out = ddim_sample(den, z1, steps=1, schedule=sched)
    assert torch.allclose(out, torch.full_like(out, 0.7), atol=1e-5)


def test_ddim_two_steps_matches_hand_computation():
    sched = CosineSchedule()
    mu, s2 = 0.0, 0.25
    den = gaussian_denoiser(mu, s2, sched)
    z1 = torch.tensor([[1.3], [-0.4]])
    out = ddim_sample(den, z1, steps=2, schedule=sched)
    # t = 1 -> 0.5: z0_hat = 0 (mean), eps_hat = z1; z_.5 = sigma_.5 * z1
    a5, s5 = math.cos(math.pi / 4), math.sin(math.pi / 4)
    z5 = s5 * z1
    # t = 0.5 -> 0: z0_hat = a s2 z / (a^2 s2 + s^2)
    expected = a5 * s2 * z5 / (a5**2 * s2 + s5**2)
    assert torch.allclose(out, expected, atol=1e-5)


def test_ddim_converges_to_probability_flow_solution():
    # For Gaussian data the PF-ODE maps z_1 to s * z_1 (std of data); DDIM converges to it.
    sched = CosineSchedule()
    s2 = 0.25
    den = gaussian_denoiser(0.0, s2, sched)
    z1 = torch.tensor([[1.0], [-2.0]])
    errs = [float((ddim_sample(den, z1, n, sched) - math.sqrt(s2) * z1).abs().max()) for n in (4, 16, 64)]
    assert errs[2] < errs[1] < errs[0]
    assert errs[1] / errs[2] > 3  # DDIM is first order: error ~ 1/N
    assert errs[2] < 0.03


def test_sample_t_terminal_mass():
    g = torch.Generator().manual_seed(0)
    t = sample_t(10000, p_terminal=0.3, generator=g)
    frac = float((t == 1.0).float().mean())
    assert abs(frac - 0.3) < 0.02
    assert float(t.min()) >= 0 and float(t.max()) <= 1
    assert float((sample_t(1000, generator=g) == 1.0).float().mean()) == 0.0
