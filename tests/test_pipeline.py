"""Model serialisation and the tiled one-step pipeline."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_tiny_model
from upstep.colorfix import adain, wavelet
from upstep.degrade import imresize
from upstep.errors import ModelLoadError
from upstep.model import load_model, save_model
from upstep.pipeline import TiledUpscaler


def test_untrained_residual_model_is_exactly_bicubic():
    model = make_tiny_model(zero_out=True)
    lr = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    out = TiledUpscaler(model, tile=64).upscale(lr, seed=0)
    assert out.shape == (1, 3, 80, 96)
    assert torch.allclose(out, imresize(lr, size=(80, 96)).clamp(0, 1), atol=1e-5)


@pytest.mark.parametrize("size", [(37, 53), (8, 70), (64, 64)])
def test_tiling_machinery_is_exact_for_a_local_model(size):
    # With a zero output layer the network is pointwise (output = bicubic), so any difference
    # between tiled and untiled runs would come from tiling itself: blending weights, padding,
    # noise slicing. They must agree to float precision on odd sizes too.
    model = make_tiny_model(zero_out=True)
    lr = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))
    whole = TiledUpscaler(model, tile=256).upscale(lr, seed=5)
    tiled = TiledUpscaler(model, tile=12, overlap=4, tile_batch=3).upscale(lr, seed=5)
    assert tiled.shape == (2, 3, size[0] * 4, size[1] * 4)
    assert torch.allclose(whole, tiled, atol=1e-5)


def _pointwise_noise_model():
    """A model whose denoiser acts per latent position but depends on the noise and on z_l:
    tiled and untiled runs must then agree to float precision, so a tile pasted at the wrong
    place or a noise slice off by one latent position shows (a zero-output model hides the
    latter: its output does not depend on the noise)."""
    model = make_tiny_model(zero_out=True)
    model.predict_v = lambda z_t, z_l, t: torch.tanh(0.8 * z_t + 0.5 * z_l) * 0.3
    return model


@pytest.mark.parametrize("size", [(37, 53), (64, 64)])
def test_tiling_is_exact_for_a_noise_dependent_local_model(size):
    model = _pointwise_noise_model()
    lr = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(4))
    whole = TiledUpscaler(model, tile=256).upscale(lr, seed=5)
    bicubic = TiledUpscaler(make_tiny_model(zero_out=True), tile=256).upscale(lr, seed=5)
    assert (whole - bicubic).abs().mean() > 0.01  # the network acts
    tiled = TiledUpscaler(model, tile=12, overlap=4, tile_batch=3).upscale(lr, seed=5)
    assert torch.allclose(whole, tiled, atol=1e-5)


def test_tiling_a_random_unet_stays_close_and_converges_with_tile_size():
    """A random U-Net (GroupNorm statistics and a receptive field wider than the overlap) is not
    local, so tiles differ from the whole near their edges. Measured on this input: mean
    difference 5.3/255 at 16-px tiles (4 overlap), 1.5/255 at 32-px (8), against a network
    contribution of 14/255; the bounds leave ~1.5x room for other CPUs' float rounding."""
    model = make_tiny_model()
    lr = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    whole = TiledUpscaler(model, tile=256).upscale(lr, seed=5)
    bicubic = TiledUpscaler(make_tiny_model(zero_out=True), tile=256).upscale(lr, seed=5)
    contribution = float((whole - bicubic).abs().mean())
    assert contribution > 10 / 255
    small = float((TiledUpscaler(model, tile=16, overlap=4).upscale(lr, seed=5) - whole).abs().mean())
    large = float((TiledUpscaler(model, tile=32, overlap=8).upscale(lr, seed=5) - whole).abs().mean())
    assert large < small / 2.5
    assert large < 0.15 * contribution and small < 0.6 * contribution


def test_noise_is_seeded_and_shared_between_tilings():
    model = make_tiny_model()
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    up = TiledUpscaler(model, tile=64)
    a, b, c = up.upscale(lr, seed=1), up.upscale(lr, seed=1), up.upscale(lr, seed=2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("steps", [1, 4])
def test_pipeline_runs_ddim_with_the_requested_steps(steps):
    """The pipeline's N-step output equals DDIM written out by hand (cosine schedule,
    v-parameterisation, trailing grid t = 1, (N-1)/N, ..., 1/N), with the network called
    exactly at those times."""
    model = make_tiny_model()
    lr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    calls = []
    real_v = model.predict_v
    model.predict_v = lambda z_t, z_l, t: calls.append(float(t[0])) or real_v(z_t, z_l, t)
    out = TiledUpscaler(model, tile=64).upscale(lr, steps=steps, seed=9)
    assert calls == pytest.approx([1 - i / steps for i in range(steps)])

    # by hand: same noise (seed 9, drawn for the whole latent), residual target
    up = imresize(lr * 2 - 1, size=(64, 64)).clamp(-1, 1)
    z_l = model.autoencoder.encode(up)
    z = torch.randn(z_l.shape, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        for i in range(steps):
            t, s = 1 - i / steps, 1 - (i + 1) / steps
            a, sg = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)
            v = real_v(z, z_l, torch.full((1,), t))
            z0, eps = a * z - sg * v, sg * z + a * v        # v = alpha eps - sigma z0
            z = math.cos(math.pi * s / 2) * z0 + math.sin(math.pi * s / 2) * eps
        ref = ((model.autoencoder.decode(z + z_l).clamp(-1, 1) + 1) / 2)
    assert torch.allclose(out, ref, atol=1e-5)


def test_bicubic_condition_is_clamped_alike_in_training_and_inference():
    """Bicubic overshoots at sharp edges. Training, validation and inference all upsample the LR
    through ``model.upsample_lr``, which clamps to the pixel range [-1, 1], so the network sees
    the same kind of condition in training as at inference."""
    from upstep.recipes import build_recipe
    from upstep.config import load_config
    from upstep.train.loop import make_accelerator

    model = make_tiny_model()
    lr = (torch.arange(16).view(1, 1, 4, 4).expand(1, 3, 4, 4) % 2).float()  # 0/1 checkerboard
    raw = imresize(lr * 2 - 1, size=(16, 16))
    assert raw.max() > 1.05 and raw.min() < -1.05  # overshoot that the clamp must remove
    assert torch.equal(model.upsample_lr(lr * 2 - 1), raw.clamp(-1, 1))

    seen = []
    cfg = load_config("sr_x4_tiny.json")
    recipe = build_recipe(cfg, make_accelerator(cfg["train"]))
    for m in (model, recipe.model):
        real = m.encode_cond
        m.encode_cond = lambda x, real=real: seen.append(x) or real(x)
    TiledUpscaler(model, tile=64).upscale(lr, seed=0)                      # inference
    hr = torch.nn.functional.interpolate(lr, scale_factor=8, mode="nearest")  # sharp HR, 32x32
    recipe.encode_pair(hr, 4, torch.Generator().manual_seed(0))              # training
    assert len(seen) == 2
    for x in seen:
        assert x.min() >= -1 and x.max() <= 1
        assert x.max() == 1 and x.min() == -1  # clamped, not rescaled


def test_colorfix_takes_colour_from_reference():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(1, 3, 64, 64, generator=g)
    sr = ref * 0.5 + 0.3  # colour/contrast shifted
    fixed = adain(sr, ref)
    assert torch.allclose(fixed.mean((2, 3)), ref.mean((2, 3)), atol=1e-5)
    low = lambda x: torch.nn.functional.avg_pool2d(x, 16)  # noqa: E731
    assert (low(wavelet(sr, ref)) - low(ref)).abs().mean() < (low(sr) - low(ref)).abs().mean() / 4


def test_save_load_round_trip(tmp_path):
    model = make_tiny_model()
    folder = save_model(model, tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["kind"] == "vdiffusion" and cfg["scale"] == 4
    loaded = load_model(folder)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    lr = torch.rand(1, 3, 8, 8) * 2 - 1
    n = torch.randn(1, 48, 8, 8)
    assert torch.allclose(model.upscale_tensor(lr, noise=n), loaded.upscale_tensor(lr, noise=n))


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="missing config.json"):
        load_model(tmp_path)
    save_model(make_tiny_model(), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot read safetensors"):
        load_model(tmp_path / "m")
    save_model(make_tiny_model(), tmp_path / "k")
    (tmp_path / "k" / "config.json").write_text('{"kind": "nope"}')
    with pytest.raises(ModelLoadError, match="unknown model kind"):
        load_model(tmp_path / "k")


def test_progress_callback_counts_every_tile():
    # 20x24 LR with 8-px tiles and 2-px overlap: 3 x 4 tiles per image, two images, batches of 5
    model = make_tiny_model(zero_out=True)
    lr = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(4))
    seen = []
    TiledUpscaler(model, tile=8, overlap=2, tile_batch=5).upscale(lr, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(5, 24), (10, 24), (12, 24), (17, 24), (22, 24), (24, 24)]


def test_auto_tile_runs_a_256_input_whole_and_bounds_bigger_ones():
    up = TiledUpscaler(make_tiny_model(), tile="auto")  # x4: a 256² input is a 1024² output
    assert up.tile_shape(1024, 1024) == (1024, 1024)  # one tile, not a 3x3 grid
    for hw in ((2048, 2048), (4096, 4096), (4096, 512), (600, 8000)):
        th, tw = up.tile_shape(*hw)
        assert th * tw <= up.auto_tile_px and th % up.multiple == 0 and tw % up.multiple == 0
        assert th >= min(hw[0], 512) and tw >= min(hw[1], 512)  # balanced: no thin slivers
    assert up.tile_shape(4096, 512)[1] == 512  # a wide strip keeps its whole short side
    assert TiledUpscaler(make_tiny_model(), tile=128).tile_shape(1024, 1024) == (512, 512)  # --tile overrides


def test_auto_tiles_cover_the_image_exactly():
    # a small budget forces several uneven tiles; with a pointwise network they must agree
    # with the untiled run (blending, coverage of the borders, noise slicing)
    model = make_tiny_model(zero_out=True)
    lr = torch.rand(1, 3, 37, 61, generator=torch.Generator().manual_seed(4))
    whole = TiledUpscaler(model, tile=256).upscale(lr, seed=2)
    small = TiledUpscaler(model, tile="auto", overlap=4, auto_tile_px=64 * 64)
    assert small.tile_shape(152, 248) != (152, 248)
    assert torch.allclose(small.upscale(lr, seed=2), whole, atol=1e-5)


def test_bf16_autocast_stays_close_to_float32():
    model = make_tiny_model()
    lr = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    ref = TiledUpscaler(model, dtype=torch.float32, channels_last=False).upscale(lr, seed=0)
    fast = TiledUpscaler(model, dtype=torch.bfloat16, channels_last=True).upscale(lr, seed=0)
    err = (fast - ref).abs()
    assert not torch.equal(fast, ref)  # bf16 really ran
    assert err.mean() < 1 / 255 and err.max() < 8 / 255  # 8-bit outputs barely move


def test_auto_dtype_follows_the_cpu_flags(monkeypatch):
    from upstep import hardware
    from upstep.api import pick_dtype
    from upstep.errors import UpstepError

    cpu = torch.device("cpu")
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", frozenset({"avx2", "avx512f"})))
    assert pick_dtype("auto", cpu) == torch.float32  # bf16 would be emulated: slower
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", frozenset({"avx512f", "avx512_bf16"})))
    assert pick_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: ("x", frozenset({"amx_tile", "amx_bf16"})))
    assert pick_dtype("auto", cpu) == torch.bfloat16
    assert pick_dtype("float32", cpu) == torch.float32
    with pytest.raises(UpstepError, match="float16"):
        pick_dtype("float16", cpu)  # never float16 on CPU


def test_unet_without_mid_attention_is_convolutional_and_round_trips(tmp_path):
    """``mid_attention: false`` drops the middle block's self-attention (default-x4): no attention layer
    is left and the setting is saved.
    Configs written before the key existed load with attention, as they were trained."""
    from diffusers.models.attention_processor import Attention

    from upstep.model import SRDiffusionModel, load_model, save_model
    from upstep.nn.autoencoders import PixelUnshuffleAutoencoder
    from upstep.nn.unet import SRUNet, build_unet

    def unet(**kw):
        torch.manual_seed(0)
        return SRUNet(48, block_out_channels=(16, 32, 32), norm_num_groups=8, zero_init_out=False, **kw)

    assert any(isinstance(m, Attention) for m in unet().modules())
    conv = unet(mid_attention=False)
    assert not any(isinstance(m, Attention) for m in conv.modules())
    model = SRDiffusionModel(PixelUnshuffleAutoencoder(4), conv, 4).eval()
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m").unet.config()["mid_attention"] is False
    old = conv.config()
    old.pop("mid_attention")
    assert any(isinstance(m, Attention) for m in build_unet(old).modules())


def test_cpu_pipeline_keeps_freed_buffers_for_reuse_on_glibc():
    """Building a CPU TiledUpscaler (and nothing else) makes glibc keep freed buffers: in a fresh
    process a 16 MB buffer, freed and asked for again, comes back without page faults. The control
    process, which builds no pipeline, pays them, so the check fails if the pipeline stops asking."""
    import json
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    cfg = json.dumps(make_tiny_model().config())
    build = ("import json; from upstep.model import SRDiffusionModel; from upstep.pipeline import TiledUpscaler; "
             f"TiledUpscaler(SRDiffusionModel.from_config(json.loads({cfg!r})), 'cpu')")
    faults = {}
    for name, setup in (("pipeline", build), ("control", "import upstep.pipeline")):
        # one intra-op thread: worker threads started or woken under load fault in their own
        # stacks, which is noise for a check of what malloc does with one freed buffer
        out = subprocess.run([sys.executable, "-c", _FAULTS.format(mb=16, setup=setup)],
                             capture_output=True, text=True, timeout=120,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert out.returncode == 0, out.stderr
        faults[name] = int(out.stdout)
    assert faults["pipeline"] < 200, faults       # 16 MB = 4096 pages of 4 KB each time otherwise
    assert faults["control"] >= 300, faults   # ~500 with transparent huge pages, 4096 without


_FAULTS = """if True:
    import resource
    {setup}
    import torch
    def faults():
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones({mb} * 2**18).sum()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0
    faults()
    print(min(faults() for _ in range(5)))
"""


@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage/enabled").exists()
                    or "[never]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text(),
                    reason="no transparent huge pages on this system")
def test_importing_upstep_first_gives_large_buffers_huge_pages():
    """A 128 MB buffer (over glibc's 32 MB mmap ceiling: fresh memory on every call) costs 32768
    page faults of 4 KB; with upstep imported before torch, 64 of 2 MB."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    runs = {}
    for setup in ("import upstep", "pass"):
        out = subprocess.run([sys.executable, "-c", _FAULTS.format(mb=128, setup=setup)], env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        runs[setup] = int(out.stdout)
    assert runs["pass"] > 30000 and runs["import upstep"] < 1000, runs
