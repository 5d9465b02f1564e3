"""Stable Diffusion scale: --init-from an SD-shaped diffusers folder (UNet2DConditionModel +
AutoencoderKL + CLIP text encoder/tokenizer, tiny and random, built offline), the GPU configs in
configs/gpu/ shrunk to a few steps, the memory switches, and clear errors for other folders."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import HAVE_FEATURE_NET
from upstep.config import load_config
from upstep.errors import ConfigError
from upstep.model import load_model, save_model
from upstep.recipes.base import build_sr_model
from upstep.testing import TEXT_LEN, make_tiny_sd_folder

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """(folder, vae, pretrained unet, text encoder) of a tiny SD folder with a text encoder."""
    folder = tmp_path_factory.mktemp("sd") / "tiny-sd"
    return (folder, *make_tiny_sd_folder(folder, text_encoder=True))


def empty_prompt_embedding(enc):
    """CLIP's hidden states for "" by hand: <start>, then <end> padding to the full length."""
    ids = torch.tensor([[0] + [1] * (TEXT_LEN - 1)])
    with torch.no_grad():
        return enc(ids).last_hidden_state


# ---- init: the SR model equals the pretrained U-Net on the noisy latent ----------------------
def test_sd_init_equals_the_pretrained_unet_with_the_null_prompt(sd, tmp_path):
    from upstep.init_from import load_diffusers_init

    folder, vae, pre, enc = sd
    ae, unet = load_diffusers_init(folder)
    assert ae.scaling == pytest.approx(0.18215)                     # from vae/config.json
    w = unet.unet.conv_in.weight
    assert w.shape[1] == 8 and torch.equal(w[:, 4:], torch.zeros_like(w[:, 4:]))
    c0 = empty_prompt_embedding(enc)
    assert c0.abs().mean() > 0.1                                     # a real embedding, not zeros
    assert torch.allclose(unet.null_embedding, c0, atol=1e-6)
    g = torch.Generator().manual_seed(0)
    z_t = torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0.1, 0.5, 1.0])
    with torch.no_grad():
        ref = pre(z_t, t * 1000, encoder_hidden_states=c0.expand(3, -1, -1)).sample
        for cond in (torch.zeros_like(z_t), 5 * torch.randn(3, 4, 8, 8, generator=g)):
            assert torch.allclose(unet(z_t, cond, t), ref, atol=1e-5)
        other = pre(z_t, t * 1000, encoder_hidden_states=torch.zeros_like(c0).expand(3, -1, -1)).sample
        assert (other - ref).abs().max() > 1e-3                      # the text condition matters
        x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
        assert torch.allclose(ae.encode(x), vae.encode(x).latent_dist.mode() * 0.18215, atol=1e-6)

    # without text_encoder/ + tokenizer/: zeros of (77, cross_attention_dim), still the same network
    bare = tmp_path / "bare"
    _, pre2, _ = make_tiny_sd_folder(bare, text_encoder=False, seed=1)
    _, unet2 = load_diffusers_init(bare)
    assert unet2.null_embedding.shape == (1, 77, 16) and not unet2.null_embedding.any()
    with torch.no_grad():
        ref2 = pre2(z_t, t * 1000, encoder_hidden_states=torch.zeros(3, 77, 16)).sample
        assert torch.allclose(unet2(z_t, torch.randn_like(z_t), t), ref2, atol=1e-5)


# ---- shipped format, upstep.load, tiling, upstep eval ---------------------------------------
def test_sd_model_saves_loads_tiles_and_evaluates(sd, tmp_path):
    import upstep
    from upstep.cli import main
    from upstep.pipeline import TiledUpscaler

    folder, _, _, enc = sd
    model = build_sr_model({"model": {"init_from": str(folder)}, "data": {"scale": 4}}).eval()
    assert model.target == "latent" and model.pixel_multiple == 4      # VAE f = 2, U-Net one halving
    # as scripts/ship_model.py writes it: float16 safetensors + JSON, null embedding included
    saved = save_model(model, tmp_path / "m", dtype=torch.float16)
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["unet"]["diffusers_class"] == "UNet2DConditionModel"
    assert cfg["unet"]["null_embedding_shape"] == [TEXT_LEN, 16]
    from safetensors.torch import load_file
    assert "unet.null_embedding" in load_file(str(saved / "model.safetensors"))
    loaded = load_model(saved)
    assert torch.allclose(loaded.unet.null_embedding, empty_prompt_embedding(enc), atol=1e-2)
    g = torch.Generator().manual_seed(0)
    lr = torch.rand(1, 3, 12, 12, generator=g) * 2 - 1
    noise = torch.randn(1, 4, 24, 24, generator=g)
    a, b = loaded.upscale_tensor(lr, noise=noise), model.upscale_tensor(lr, noise=noise)
    assert (a - b).abs().max() < 0.05          # float16 storage only

    # upstep.load + tiling: batching tiles changes nothing; tiled ~ untiled (the network's context
    # differs near tile edges: this random U-Net attends over the whole tile)
    up = upstep.load(saved, device="cpu", tile=12, overlap=4)
    img = torch.rand(1, 3, 20, 28, generator=g)
    tiled = up.upscale_tensor(img, seed=3)
    assert tiled.shape == (1, 3, 80, 112)
    up.pipeline.tile_batch = 1
    assert torch.allclose(up.upscale_tensor(img, seed=3), tiled, atol=1e-5)
    whole = TiledUpscaler(loaded, tile=64).upscale(img, seed=3)
    other_seed = TiledUpscaler(loaded, tile=64).upscale(img, seed=4)
    assert (tiled - whole).abs().mean() < 0.5 * (other_seed - whole).abs().mean()
    pil = up.upscale(Image.fromarray((np.random.default_rng(0).random((16, 20, 3)) * 255).astype(np.uint8)))
    assert pil.size == (80, 64)

    # upstep eval on a one-image paired set
    root = tmp_path / "data"
    (root / "eval/one/hr").mkdir(parents=True)
    (root / "eval/one/lr").mkdir(parents=True)
    hr = Image.fromarray((np.random.default_rng(1).random((48, 48, 3)) * 255).astype(np.uint8))
    hr.save(root / "eval/one/hr/a.png")
    hr.resize((12, 12), Image.BICUBIC).save(root / "eval/one/lr/a.png")
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(saved), "--sets", "one", "--steps", "1", "--out", str(out), "--peers",
                 "none", "--metrics", "psnr", "--data-root", str(root), "--device", "cpu", "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())["sets"]["one"]["methods"]
    assert res["model@1"]["psnr"] > 0 and "bicubic" in res


# ---- the GPU configs, shrunk: YONOS chain + decoder fine-tuning, ResShift teacher + co-learning
def shrink(cfg: dict, steps: int = 3) -> dict:
    cfg["data"].update(train_dirs=["train/pkg_samples"], crop=32, val_fraction=0.2, degradation="bicubic")
    cfg["train"].update(steps=steps, batch=1, checkpoint_every=steps, val_every=0, log_every=1, warmup=0)
    return cfg


def test_gpu_yonos_chain_config_trains_from_an_sd_folder(sd, tmp_path):
    from upstep.cli import main
    from upstep.recipes.scale_distill import chain_stages

    folder, _, _, enc = sd
    chain = load_config("gpu/sd_yonos_chain.json")
    stages = [shrink(s) for s in chain_stages(chain)]
    assert [s["recipe"] for s in stages] == ["standard", "scale_distill", "scale_distill", "decoder_finetune"]
    assert all(s["train"]["mixed_precision"] == "bf16" and s["train"]["gradient_checkpointing"]
               and s["train"]["attention"] == "sdpa" for s in stages)
    stages[3]["decoder_finetune"].update(disc_start=1, disc={"channels": 8, "n_layers": 2},
                                         perceptual_weight=0.5 if HAVE_FEATURE_NET else 0.0)
    cfg_path = tmp_path / "chain.json"
    cfg_path.write_text(json.dumps({"recipe": "yonos_chain", "stages": stages}))
    root = tmp_path / "run"
    assert main(["train", str(cfg_path), "-o", str(root), "--init-from", str(folder), "--no-progress"]) == 0

    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    assert [d.name for d in dirs] == ["stage0_x2", "stage1_x4_distilled", "stage2_x8_distilled", "stage3_x8_decoder"]
    models = [load_model(d / "model") for d in dirs]
    assert [m.scale for m in models] == [2, 4, 8, 8]
    for d in dirs:
        logs = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in logs] == [1, 2, 3] and all(np.isfinite(r["loss"]) for r in logs)
    init = build_sr_model({"model": {"init_from": str(folder)}, "data": {"scale": 2}})
    c0 = empty_prompt_embedding(enc)
    for m in models:   # the null prompt is fixed: carried, never trained
        assert torch.allclose(m.unet.null_embedding, c0, atol=1e-6)

    def changed(a, b, prefix):
        sa, sb = a.state_dict(), b.state_dict()
        return any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith(prefix))
    assert changed(models[0], init, "unet.") and not changed(models[0], init, "autoencoder.")
    assert changed(models[1], models[0], "unet.") and changed(models[2], models[1], "unet.")
    assert changed(models[3], models[2], "autoencoder.vae.decoder.")          # the SD VAE's decoder
    assert not changed(models[3], models[2], "unet.") and not changed(models[3], models[2], "autoencoder.vae.encoder.")
    out = models[3].upscale_tensor(torch.rand(1, 3, 4, 4) * 2 - 1, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_gpu_colearn_configs_train_an_sd_size_resshift_teacher_and_student(sd, tmp_path):
    from upstep.diffusion.resshift_model import ResShiftSRModel
    from upstep.train.loop import train

    folder = sd[0]
    tcfg = shrink(load_config("gpu/sd_resshift_teacher.json"), steps=2)
    tcfg["model"]["init_from"] = str(folder)          # what --init-from sets
    teacher = load_model(train(tcfg, tmp_path / "teacher", progress=False))
    assert isinstance(teacher, ResShiftSRModel) and teacher.schedule.T == 15
    assert teacher.unet.config()["diffusers_class"] == "UNet2DConditionModel"
    scfg = shrink(load_config("gpu/sd_colearn.json"), steps=1)
    scfg["teacher"] = str(tmp_path / "teacher" / "model")
    scfg["colearn"].update(hr_disc={"channels": [8, 16, 32]}, lr_disc={"channels": 8, "n_down": 1},
                           diffusion_downsampler={"unet": {"latent_channels": 4, "block_out_channels": [8, 16],
                                                           "norm_num_groups": 4}})
    student = load_model(train(scfg, tmp_path / "student", progress=False))
    assert student.default_steps == 1 and student.scale == 4
    logs = [json.loads(line) for line in (tmp_path / "student" / "log.jsonl").read_text().splitlines()]
    assert np.isfinite(logs[-1]["loss"])


# ---- memory switches: same gradients, less stored ------------------------------------------
def test_gradient_checkpointing_and_sdpa_keep_the_gradients(sd):
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    from upstep.init_from import load_diffusers_init
    from upstep.nn.unet import set_memory_options

    _, unet = load_diffusers_init(sd[0])
    for m in unet.modules():   # start from the classic (non-SDPA) attention to see the switch act
        if isinstance(m, Attention):
            m.set_processor(AttnProcessor())
    g = torch.Generator().manual_seed(0)
    z, c, t = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), torch.tensor([0.2, 0.7])

    def grads():
        unet.zero_grad()
        unet(z, c, t).square().mean().backward()
        return [p.grad.clone() for p in unet.parameters()]
    ref = grads()
    set_memory_options(unet, gradient_checkpointing=True, attention="sdpa")
    procs = [m.processor for m in unet.modules() if isinstance(m, Attention)]
    assert procs and all(isinstance(p, AttnProcessor2_0) for p in procs)
    assert unet.unet.is_gradient_checkpointing
    for a, b in zip(ref, grads()):
        assert torch.allclose(a, b, atol=1e-5)
    with pytest.raises(ConfigError, match="sdpa"):
        set_memory_options(unet, attention="flash3")


# ---- folders that are not supported say so --------------------------------------------------
def test_unsupported_folders_give_clear_errors(sd, tmp_path, capsys):
    import shutil

    from upstep.cli import main
    from upstep.init_from import load_diffusers_init

    folder = sd[0]
    with pytest.raises(ConfigError, match="not a diffusers folder"):
        load_diffusers_init(tmp_path)

    def variant(name, edit_unet=None, drop=None):
        dst = tmp_path / name
        shutil.copytree(folder, dst)
        if edit_unet:
            p = dst / "unet" / "config.json"
            p.write_text(json.dumps({**json.loads(p.read_text()), **edit_unet}))
        if drop:
            shutil.rmtree(dst / drop)
        return dst
    sdxl = variant("sdxl", {"addition_embed_type": "text_time", "addition_time_embed_dim": 8})
    with pytest.raises(ConfigError, match="addition_embed_type.*SD 1.x/2.x"):
        load_diffusers_init(sdxl)
    with pytest.raises(ConfigError, match="UNet3DConditionModel.*not supported"):
        load_diffusers_init(variant("video", {"_class_name": "UNet3DConditionModel"}))
    with pytest.raises(ConfigError, match="no tokenizer"):
        load_diffusers_init(variant("notok", drop="tokenizer"))

    # through the CLI: one line naming the folder, exit 2
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(shrink(load_config("gpu/sd_tiny_check.json"))))
    assert main(["train", str(cfg), "-o", str(tmp_path / "r"), "--init-from", str(sdxl), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("upstep train: error:") and str(sdxl / "unet") in err and len(err.splitlines()) == 1
