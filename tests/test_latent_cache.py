"""Crop pools and the frozen encoder's latent cache (``data.crop_pool``, ``train.latent_cache``)."""
import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_image_folder
from test_yonos import KL_MODEL, tiny
from upstep.errors import ConfigError
from upstep.recipes.base import build_sr_model
from upstep.train.data import HRCropDataset, list_images, step_generator
from upstep.train.latent_cache import LatentCache
from upstep.train.loop import train


def _crops(ds, batches=30, size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {ds_bytes for _ in range(batches) for ds_bytes in (c.numpy().tobytes() for c in ds.batch(size, g))}


def test_crop_pool_draws_from_a_fixed_set_of_crops(tmp_path):
    files = list_images([make_image_folder(tmp_path / "imgs", n_train=3, n_val=0, size=48)])
    pool = HRCropDataset(files, 16, pool=5, pool_seed=0)
    seen = _crops(pool)
    assert 1 < len(seen) <= 5   # 120 draws, never outside the pool
    assert seen | _crops(HRCropDataset(files, 16, pool=5, pool_seed=0), seed=1) == seen  # same seed, same pool
    assert _crops(HRCropDataset(files, 16, pool=5, pool_seed=1)) != seen
    assert len(_crops(HRCropDataset(files, 16))) > 100   # without a pool: fresh crops
    with pytest.raises(ConfigError, match="crop_pool must be"):
        HRCropDataset.from_config([str(tmp_path / "imgs")], 16, pool=-3)


def test_fresh_crops_draw_what_they_drew_before_the_pool_existed(tmp_path):
    """Without a pool the crops (and so every existing run's data) are unchanged: index, y, x and
    the flip/rotation drawn in that order, as the loader did before ``crop_pool``."""
    files = list_images([make_image_folder(tmp_path / "imgs", n_train=3, n_val=0, size=48)])
    ds = HRCropDataset(files, 16)
    g = torch.Generator().manual_seed(7)
    idx = torch.randint(len(ds), (5,), generator=g)
    want = []
    for i in idx.tolist():
        img = ds.image(i)
        y = int(torch.randint(img.shape[1] - 15, (1,), generator=g))
        x = int(torch.randint(img.shape[2] - 15, (1,), generator=g))
        c = img[:, y:y + 16, x:x + 16]
        aug = int(torch.randint(8, (1,), generator=g))
        c = c.flip(-1) if aug & 1 else c
        want.append(torch.rot90(c, aug >> 1, dims=(-2, -1)))
    assert torch.equal(ds.batch(5, torch.Generator().manual_seed(7)), torch.stack(want).float() / 255.0)


class _Counting:
    """Wraps an autoencoder's encode and counts the samples it encodes."""

    def __init__(self, ae):
        self.ae, self.samples = ae, 0
        self.encode = ae.encode

    def __call__(self, x):
        self.samples += x.shape[0]
        return self.encode(x)


def _kl_autoencoder(seed=0):
    torch.manual_seed(seed)
    return build_sr_model({"model": KL_MODEL, "data": {"scale": 4}}).autoencoder.requires_grad_(False).eval()


def test_latent_cache_returns_the_encoders_latents_once_per_sample(tmp_path, monkeypatch):
    ae = _kl_autoencoder()
    counter = _Counting(ae)
    monkeypatch.setattr(ae, "encode", counter)
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cache = LatentCache(tmp_path / "cache")
    z = cache.encode(ae, x)
    with torch.no_grad():
        assert torch.allclose(z, counter.encode(x), atol=1e-5)
    assert counter.samples == 3

    again = torch.cat([x[1:2], x[0:1], -x[2:3]])   # two seen samples, one new
    z2 = cache.encode(ae, again)
    assert counter.samples == 4 and (cache.hits, cache.misses) == (2, 4)
    assert torch.equal(z2[0], z[1]) and torch.equal(z2[1], z[0])

    cache.flush()
    parts = list((tmp_path / "cache").glob("*/part-*.safetensors"))
    assert len(parts) == 1 and len(load_file(parts[0])) == 4
    fresh = LatentCache(tmp_path / "cache")      # a restarted run reads the parts back
    assert torch.equal(fresh.encode(ae, x), z) and counter.samples == 4

    bytes_before = parts[0].read_bytes()         # a truncated part: named, never deleted or rewritten
    broken = parts[0].with_name("part-0-truncated.safetensors")
    broken.write_bytes(bytes_before[:100])
    with pytest.raises(ConfigError, match="part-0-truncated.safetensors.*delete it"):
        LatentCache(tmp_path / "cache").encode(ae, x)
    assert broken.read_bytes() == bytes_before[:100] and parts[0].read_bytes() == bytes_before
    broken.unlink()

    other = _kl_autoencoder(seed=1)              # other weights: nothing of the first encoder's is reused
    with torch.no_grad():
        assert torch.allclose(fresh.encode(other, x), other.encode(x), atol=1e-5)
    assert fresh.misses == 3
    rescaled = _kl_autoencoder()                 # the same weights, another latent scaling
    rescaled.scaling = 0.5 * ae.scaling
    with torch.no_grad():
        assert torch.allclose(fresh.encode(rescaled, x), 0.5 * z, atol=1e-5)
    assert fresh.misses == 6

    ae.train()
    with pytest.raises(RuntimeError, match="frozen"):
        fresh.encode(ae, x)


def test_latent_cache_config_errors(tmp_path):
    cfg = {"recipe": "autoencoder", "train": {"latent_cache": True}, "data": {"crop_pool": 8}}
    with pytest.raises(ConfigError, match="standard and scale_distill"):
        LatentCache.from_config(cfg, tmp_path)
    cfg = {"recipe": "standard", "train": {"latent_cache": True}, "data": {"degradation": "bicubic"}}
    with pytest.raises(ConfigError, match="crop_pool"):
        LatentCache.from_config(cfg, tmp_path)
    cfg["data"].update(crop_pool=8, degradation="realesrgan")
    with pytest.raises(ConfigError, match="deterministic degradation"):
        LatentCache.from_config(cfg, tmp_path)
    cfg["data"]["degradation"] = "bicubic"
    assert LatentCache.from_config(cfg, tmp_path).folder == tmp_path / "latent_cache"
    assert LatentCache.from_config({"train": {}, "data": {}}, tmp_path) is None


def _kl_cfg(**train_over):
    cfg = tiny(4, "kl_cached", steps=6, checkpoint_every=3, **train_over)
    cfg["model"] = KL_MODEL
    cfg["data"]["crop_pool"] = 4
    return cfg


def _final(run):
    latest = json.loads((run / "latest.json").read_text())
    return load_file(str(run / latest["path"] / "tensors.safetensors"))


def test_training_with_cached_latents_resumes_exactly(tmp_path):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(_kl_cfg(latent_cache=True), straight, progress=False)
    train(_kl_cfg(latent_cache=True), broken, stop_after=5, progress=False)   # "crash" after step 5
    train(_kl_cfg(latent_cache=True), broken, progress=False)
    a, b = _final(straight), _final(broken)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # 6 steps x 2 crops from a pool of 4, drawn as the loop draws them (data.batch's first draw from
    # each step's generator): each drawn crop's HR and LR latent is computed once, then reused
    drawn = {i for step in range(6) for i in torch.randint(4, (2,), generator=step_generator(0, step)).tolist()}
    assert drawn == {0, 1, 3}
    entries = sum(len(load_file(p)) for p in (straight / "latent_cache").glob("*/part-*.safetensors"))
    assert entries == 2 * len(drawn)

    plain = tmp_path / "plain"   # the same crops without the cache: the same training, to rounding
    train(_kl_cfg(), plain, progress=False)
    logs = [[json.loads(line)["loss"] for line in (r / "log.jsonl").read_text().splitlines()]
            for r in (straight, plain)]
    assert logs[0] == pytest.approx(logs[1], rel=1e-3)


def _kl_distill_cfg(tmp_path, crop_pool: int) -> dict:
    """A x2 -> x4 scale-distillation stage in a KL latent, its crops from a pool, its latents cached
    in ``tmp_path/shared_cache`` (the x2 teacher is trained here, 2 steps)."""
    from test_yonos import distill_cfg

    teacher_cfg = tiny(2, "kl_x2", steps=2, checkpoint_every=2)
    teacher_cfg["model"] = KL_MODEL
    teacher = train(teacher_cfg, tmp_path / "x2", progress=False)
    cfg = distill_cfg(teacher, scale=4, steps=4, checkpoint_every=4)
    cfg["data"]["crop_pool"] = crop_pool
    cfg["train"]["latent_cache"] = str(tmp_path / "shared_cache")
    return cfg


def test_scale_distillation_caches_the_hr_and_both_lr_latents(tmp_path):
    train(_kl_distill_cfg(tmp_path, crop_pool=2), tmp_path / "x4", progress=False)
    parts = list((tmp_path / "shared_cache").glob("*/part-*.safetensors"))
    assert len(parts) == 1   # student and teacher encoders are the same weights: one namespace
    assert len(load_file(parts[0])) == 3 * 2   # per crop: z_h, the x4 z_l and the teacher's x2 z_l


def test_filling_the_cache_in_shards_gives_training_every_latent(tmp_path, capsys):
    """``upstep train --fill-latent-cache i/n``: shards of the pool, filled apart, hold every latent
    a training run asks for (HR, student and teacher LR views), each equal to a fresh encoding."""
    from upstep.cli import main
    from upstep.recipes import build_recipe
    from upstep.train.loop import make_accelerator, training_crops

    cfg = _kl_distill_cfg(tmp_path, crop_pool=3)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    for shard in ("0/2", "1/2"):
        assert main(["train", str(tmp_path / "cfg.json"), "--run-dir", str(tmp_path / "x4"),
                     "--fill-latent-cache", shard, "--no-progress"]) == 0
    parts = sorted((tmp_path / "shared_cache").glob("*/part-*.safetensors"))
    assert len(parts) == 2 and sum(len(load_file(p)) for p in parts) == 3 * 3   # 3 crops x 3 views
    assert not (tmp_path / "x4" / "checkpoints").exists()                       # nothing was trained

    # training now finds every latent: its cache computes none (no new part file), and each cached
    # latent equals the encoder's own output
    train(cfg, tmp_path / "x4", progress=False)
    assert sorted((tmp_path / "shared_cache").glob("*/part-*.safetensors")) == parts
    recipe = build_recipe(cfg, make_accelerator(cfg["train"]))
    pool = training_crops(cfg)
    with torch.no_grad():
        z_h, z_l, z_l_t = recipe.frozen_latents(pool.pool_crops([0, 1, 2]), torch.Generator())
    cached = LatentCache(tmp_path / "shared_cache")
    recipe.latent_cache = cached
    for fresh, again in zip((z_h, z_l, z_l_t), recipe.frozen_latents(pool.pool_crops([0, 1, 2]), torch.Generator())):
        assert torch.allclose(fresh, again, atol=1e-5)
    assert cached.misses == 0 and cached.hits == 9

    assert main(["train", str(tmp_path / "cfg.json"), "--run-dir", str(tmp_path / "x4"),
                 "--fill-latent-cache", "2/2"]) != 0
    assert "shard 2/2" in capsys.readouterr().err


@pytest.mark.parametrize("shard", ["half", "1", "0/0", "-1/2"])
def test_fill_latent_cache_refuses_a_malformed_shard_before_doing_any_work(tmp_path, capsys, shard):
    from upstep.cli import main

    cfg = tiny(4, "cached", steps=2)
    cfg["data"]["crop_pool"] = 2
    cfg["train"]["latent_cache"] = str(tmp_path / "cache")
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    assert main(["train", str(tmp_path / "cfg.json"), "--run-dir", str(tmp_path / "run"),
                 f"--fill-latent-cache={shard}"]) != 0
    err = capsys.readouterr().err
    assert "SHARD/SHARDS" in err or "need 0 <= shard < shards" in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()
