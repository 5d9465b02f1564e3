"""The one training loop every recipe runs in.

A recipe (``upstep.recipes``) owns its networks, losses and optimisers and implements
``train_step``; this loop owns everything around it: accelerate (devices, mixed precision,
``accelerate launch`` for several GPUs), the per-step seeded data, EMA, progress bar,
periodic validation, atomic checkpoints and exact resume, and the final export.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from upstep.hardware import native_bf16

from upstep.model import save_json, save_model
from upstep.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from upstep.train.data import HRCropDataset, step_generator
from upstep.train.ema import EMA
from upstep.train.latent_cache import LatentCache


def make_accelerator(train_cfg: dict):
    """``train.mixed_precision``: "no" | "bf16" | "fp16" (autocast; fp16 with a dynamic loss
    scale, ``torch.amp.GradScaler``, whose settings ``train.grad_scaler`` passes through, e.g.
    ``{"init_scale": 1024, "growth_interval": 2000}``). The scaler is part of every checkpoint."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradScalerKwargs

    mp = train_cfg.get("mixed_precision", "no")
    cpu = train_cfg.get("device", "auto") == "cpu" or not torch.cuda.is_available()
    scaler_kw = dict(train_cfg.get("grad_scaler", {}))
    cpu_fp16 = mp == "fp16" and cpu
    if mp == "bf16" and cpu and not native_bf16():
        # without AVX512-BF16/AMX-BF16 every bf16 matmul is emulated: ~20x slower than float32
        # (a 1.1M U-Net step went from ~0.2 s to 5.5 s), so such a CPU trains in float32
        warnings.warn("train.mixed_precision is bf16 but this CPU has no native bf16 "
                      "(upstep.hardware.native_bf16); training in float32", stacklevel=2)
        mp = "no"
    if cpu_fp16 and not torch.amp.autocast_mode.is_autocast_available("cpu"):
        mp = "bf16"  # this torch has no CPU autocast for fp16; bf16 needs no loss scaling
    # accelerate keeps one process-wide AcceleratorState whose precision cannot change; a chain
    # (or a test session) may run stages at different precisions, so start it afresh (the
    # distributed PartialState, process group included, is kept)
    AcceleratorState._reset_state(reset_partial_state=False)
    acc = Accelerator(mixed_precision=mp, cpu=cpu, kwargs_handlers=[GradScalerKwargs(**scaler_kw)])
    if cpu_fp16 and mp == "fp16" and acc.scaler is None:
        # accelerate runs "fp16" on CPU silently in fp32; torch has CPU fp16 autocast and a CPU
        # GradScaler, so switch them on as accelerate does on a GPU (set before `prepare`, which
        # hands the scaler to the optimisers).
        acc.native_amp = True
        acc.scaler = torch.amp.GradScaler("cpu", **scaler_kw)
    return acc


def _flat(cfg, prefix: str = "") -> dict:
    if not isinstance(cfg, dict):
        return {prefix[:-1]: cfg}
    out = {}
    for k, v in cfg.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def record_config_change(path: Path, cfg: dict) -> dict:
    """A run resumed with another config (typically a larger ``train.steps`` to train on): write
    ``cfg`` to the run's config.json, so it names the config the run's model was last trained with,
    and return the changed settings ``{"a.b": [old, new]}`` (empty when nothing changed)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        old = {}
    before, after = _flat(old), _flat(cfg)
    changed = {k: [before.get(k), after.get(k)] for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)}
    if changed:
        save_json(cfg, path)
    return changed


def _identity(cfg: dict) -> dict:
    """What a checkpoint's tensors are tied to: the recipe, the networks and the scale."""
    model = {k: v for k, v in (cfg.get("model") or {}).items() if k != "init_from"}
    return {"recipe": cfg.get("recipe"), "model": model, "data.scale": (cfg.get("data") or {}).get("scale")}


def check_same_networks(run_dir: Path, cfg: dict) -> None:
    """A one-line error before a run's checkpoint is loaded into networks it was not made by."""
    from upstep.train.checkpoint import CheckpointError

    try:
        old = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError):
        return
    before, now = _identity(old), _identity(cfg)
    diff = [k for k in now if before[k] != now[k]]
    if diff:
        raise CheckpointError(f"{run_dir}: was trained with another {' and '.join(diff)} than this command's "
                              f"({', '.join(f'{before[k]!r} -> {now[k]!r}' for k in diff)[:300]}); its checkpoint "
                              "cannot continue in these networks. Use a new --run-dir, or the run's own config "
                              f"({run_dir / 'config.json'})")


def lr_at(step: int, train_cfg: dict) -> float:
    """Linear warm-up then constant (or cosine decay if ``lr_schedule`` = "cosine")."""
    base, warm, total = train_cfg["lr"], train_cfg.get("warmup", 0), train_cfg["steps"]
    if warm and step < warm:
        return base * (step + 1) / warm
    if train_cfg.get("lr_schedule") == "cosine":
        frac = (step - warm) / max(1, total - warm)
        return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    return base


def apply_memory_options(recipe, tcfg: dict) -> None:
    """``train.gradient_checkpointing`` and ``train.attention`` ("sdpa") on every diffusers network
    the recipe holds (its trainable modules and its model, e.g. the VAE whose decoder is tuned)."""
    from upstep.nn.unet import set_memory_options

    gc, attn = bool(tcfg.get("gradient_checkpointing", False)), tcfg.get("attention")
    if not gc and attn is None:
        return
    for m in [*recipe.trainable.values(), getattr(recipe, "model", None)]:
        if m is not None:
            set_memory_options(m, gradient_checkpointing=gc, attention=attn)


def _out_of_time(accelerator, t0: float, limit_s: float) -> bool:
    """The main process's clock decides for every process (they must stop at the same step)."""
    from accelerate.utils import broadcast

    flag = torch.tensor([float(time.time() - t0 > limit_s)], device=accelerator.device)
    return bool(broadcast(flag)[0] > 0) if accelerator.num_processes > 1 else bool(flag[0] > 0)


def drop_log_after(log_path: Path, step: int) -> int:
    """Remove the records of steps after ``step`` from a run's log.jsonl (a half-written last line
    included); returns how many were dropped. A resumed run trains those steps again from the
    checkpoint at ``step``, so without this they would be logged twice."""
    if not log_path.is_file():
        return 0
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]

    def kept(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except json.JSONDecodeError:   # cut off by the crash
            return False
    keep = [line for line in lines if kept(line)]
    if len(keep) < len(lines):
        from upstep.atomic import atomic_write
        atomic_write(log_path, lambda tmp: Path(tmp).write_text("".join(line + "\n" for line in keep)))
    return len(lines) - len(keep)


def training_crops(cfg: dict) -> HRCropDataset:
    """The training split of ``cfg``'s data, with its crop pool (``data.crop_pool``) if any."""
    d = cfg["data"]
    return HRCropDataset.from_config(d["train_dirs"], d["crop"], "train", d.get("val_fraction", 0.02), d.get("limit"),
                                     pool=d.get("crop_pool", 0), pool_seed=int(cfg.get("seed", 0)))


def train(cfg: dict, run_dir: str | Path, *, stop_after: int | None = None, progress: bool = True) -> Path:
    """Train ``cfg`` into ``run_dir``; resumes from ``run_dir/latest.json`` if present.

    ``stop_after`` ends the run after that many steps of *this invocation* (as a crash would,
    minus the crash) — used by the resume tests. Returns the exported model folder.
    """
    from upstep.registry import build_recipe

    run_dir = Path(run_dir)
    tcfg, dcfg = cfg["train"], cfg["data"]
    seed = int(cfg.get("seed", 0))
    accelerator = make_accelerator(tcfg)
    torch.manual_seed(seed)  # network initialisation is seeded too
    recipe = build_recipe(cfg, accelerator)

    data = training_crops(cfg)
    recipe.latent_cache = LatentCache.from_config(cfg, run_dir)
    val = None
    if tcfg.get("val_every"):
        val = HRCropDataset.from_config(dcfg["train_dirs"], dcfg.get("val_crop", dcfg["crop"]), "val",
                                        dcfg.get("val_fraction", 0.02))

    apply_memory_options(recipe, tcfg)
    names = list(recipe.trainable)
    opt_names = list(recipe.optimizers)
    prepared = accelerator.prepare(*[recipe.trainable[n] for n in names],
                                   *[recipe.optimizers[n] for n in opt_names])
    recipe.wrapped = dict(zip(names, prepared[: len(names)]))
    for n, o in zip(opt_names, prepared[len(names):]):
        recipe.optimizers[n] = o
    emas = {n: EMA(recipe.trainable[n], tcfg.get("ema", 0.999), tcfg.get("ema_warmup", 100))
            for n in recipe.ema_names}
    recipe.emas = emas

    start = 0
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        check_same_networks(run_dir, cfg)
        state = load_checkpoint(ckpt, recipe.trainable, recipe.optimizers, emas, scaler=accelerator.scaler)
        start = state["step"]
        if int(tcfg["steps"]) < start:   # nothing on disk has changed yet
            from upstep.train.checkpoint import CheckpointError

            raise CheckpointError(f"{run_dir}: is already at step {start}, past train.steps={tcfg['steps']}; "
                                  f"raise train.steps to train on (--set train.steps={start} exports what it has)")
        dropped = drop_log_after(run_dir / "log.jsonl", start) if accelerator.is_main_process else 0
        accelerator.print(f"resumed from {ckpt} at step {start}"
                          + (f" ({dropped} log records of later steps dropped: they are trained again)"
                             if dropped else ""))
        if accelerator.is_main_process:
            changed = record_config_change(run_dir / "config.json", cfg)
            if changed:
                accelerator.print(f"{run_dir / 'config.json'} now records this command's config: "
                                  + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items()))
    elif accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_json(cfg, run_dir / "config.json")
        (run_dir / "log.jsonl").unlink(missing_ok=True)   # from step 0: an earlier start that saved nothing

    total = int(tcfg["steps"])
    end = total if stop_after is None else min(total, start + stop_after)
    log_path = run_dir / "log.jsonl"
    bar = tqdm(range(start, end), initial=start, total=total, desc=cfg.get("name", cfg["recipe"]),
               disable=not (progress and accelerator.is_main_process), dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        for group_opt in recipe.optimizers.values():
            for group in group_opt.param_groups:
                group["lr"] = lr_at(step, tcfg) * group.get("lr_mult", 1.0)
        g = step_generator(seed, step, process=accelerator.process_index)
        # torch's global RNG (dropout, anything not given `g`) is a function of the step too,
        # so a resumed run draws what the uninterrupted one drew
        torch.manual_seed(step_generator(seed, step, stream=1, process=accelerator.process_index).initial_seed())
        hr = data.batch(tcfg["batch"], g).to(accelerator.device)
        logs = recipe.train_step(step, hr, g)
        for n, e in emas.items():
            e.update(accelerator.unwrap_model(recipe.wrapped[n]))
        done = step + 1
        if val is not None and (done % tcfg["val_every"] == 0 or done == total):
            logs.update(recipe.validate(val.center_crops(dcfg.get("val_images", 8)).to(accelerator.device)))
        if recipe.latent_cache is not None and (done % tcfg.get("checkpoint_every", 500) == 0 or done == total):
            recipe.latent_cache.flush()  # every process writes its own part file
        if accelerator.is_main_process:
            if done % tcfg.get("log_every", 50) == 0 or done == end or "val_psnr" in logs:
                rec = {"step": done, "lr": lr_at(step, tcfg), "elapsed_s": round(time.time() - t0, 2), **logs}
                with open(log_path, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, float)})
            if done % tcfg.get("checkpoint_every", 500) == 0 or done == total:
                save_checkpoint(run_dir, done, recipe.trainable, recipe.optimizers, emas,
                                extra={"recipe": cfg["recipe"]}, scaler=accelerator.scaler)
        if tcfg.get("time_limit_s") and done < total and _out_of_time(accelerator, t0, tcfg["time_limit_s"]):
            # wall-clock budget (the GPU script): finish here, as if ``steps`` had been ``done``
            accelerator.print(f"time limit of {tcfg['time_limit_s']} s reached at step {done}")
            total = end = done
            if accelerator.is_main_process:
                with open(log_path, "a") as fh:   # the log's last line is the step the run ended at
                    fh.write(json.dumps({"step": done, "elapsed_s": round(time.time() - t0, 2),
                                         "stopped": "time_limit"}) + "\n")
                save_checkpoint(run_dir, done, recipe.trainable, recipe.optimizers, emas,
                                extra={"recipe": cfg["recipe"]}, scaler=accelerator.scaler)
            break
    bar.close()
    if recipe.latent_cache is not None:
        recipe.latent_cache.flush()
    accelerator.wait_for_everyone()
    out = run_dir / "model"
    if accelerator.is_main_process and end == total:
        model = recipe.export()
        save_model(model, out, extra={"recipe": cfg["recipe"], "steps": total, "config": cfg.get("name", ""),
                                      "trained_by": "upstep train", "train_config": cfg})
    accelerator.wait_for_everyone()  # every process sees the model (a chain's next stage loads it)
    return out


def fill_latent_cache(cfg: dict, run_dir: str | Path, shard: int = 0, shards: int = 1, batch: int = 8) -> dict:
    """Compute the frozen encoder's latents of ``cfg``'s whole crop pool into its latent cache
    (``train.latent_cache``), without training: pool entries ``shard``, ``shard + shards``, ...
    Several processes (one shard each) fill a cache once, instead of every run that starts on an
    empty cache recomputing the same misses. Returns the cache's hit and miss counts."""
    from upstep.errors import ConfigError
    from upstep.registry import build_recipe

    if not 0 <= shard < shards:
        raise ConfigError(f"latent-cache shard {shard}/{shards}: need 0 <= shard < shards")
    seed = int(cfg.get("seed", 0))
    cache = LatentCache.from_config(cfg, Path(run_dir))
    if cache is None:
        raise ConfigError("filling a latent cache needs train.latent_cache (and data.crop_pool) in the config")
    accelerator = make_accelerator(cfg["train"])
    torch.manual_seed(seed)
    recipe = build_recipe(cfg, accelerator)
    recipe.latent_cache = cache
    data = training_crops(cfg)
    mine = list(range(shard, data.pool, shards))
    g = step_generator(seed, 0)   # the degradation is deterministic (the cache requires it): unused
    for n, i in enumerate(tqdm(range(0, len(mine), batch), desc=f"latents {shard}/{shards}"), 1):
        recipe.frozen_latents(data.pool_crops(mine[i:i + batch]).to(accelerator.device), g)
        if n % 250 == 0:
            cache.flush()
    cache.flush()
    return {"hits": cache.hits, "misses": cache.misses}
