"""The training loop: a loss that goes down, checkpoints, exact resume, export."""
import json

import pytest
import torch
from safetensors.torch import load_file

from upstep.config import load_config
from upstep.errors import ConfigError
from upstep.model import load_model
from upstep.train.loop import train


def tiny_cfg(**train):
    cfg = load_config("sr_x4_tiny.json")
    cfg["train"].update(train)
    return cfg


def _final_tensors(run_dir):
    latest = json.loads((run_dir / "latest.json").read_text())
    return load_file(str(run_dir / latest["path"] / "tensors.safetensors"))


def test_resume_continues_exactly_where_a_killed_run_stopped(tmp_path):
    straight = tmp_path / "straight"
    train(tiny_cfg(steps=6, checkpoint_every=3, val_every=0), straight, progress=False)
    broken = tmp_path / "broken"
    # "crash" after 5 steps: the last checkpoint is at step 3, steps 4-5 are lost
    train(tiny_cfg(steps=6, checkpoint_every=3, val_every=0), broken, stop_after=5, progress=False)
    assert json.loads((broken / "latest.json").read_text())["step"] == 3
    assert not (broken / "model").exists()
    logged = lambda run: [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]  # noqa: E731
    assert logged(broken) == [1, 2, 3, 4, 5]   # steps 4 and 5 are after the checkpoint: trained again
    with open(broken / "log.jsonl", "a") as fh:
        fh.write('{"step": 5, "lo')        # and a record the crash cut off
    train(tiny_cfg(steps=6, checkpoint_every=3, val_every=0), broken, progress=False)
    assert logged(broken) == logged(straight) == [1, 2, 3, 4, 5, 6]   # each step once, as in the straight run
    a, b = _final_tensors(straight), _final_tensors(broken)
    assert a.keys() == b.keys()
    for k in a:  # weights, EMA and Adam moments all identical
        assert torch.equal(a[k], b[k]), k
    m1, m2 = load_model(straight / "model"), load_model(broken / "model")
    for (k, x), (_, y) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(x, y), k


def test_a_run_trained_on_with_more_steps_records_the_new_config(tmp_path, capsys):
    """Resuming with a larger train.steps trains on; config.json (which ship_model embeds in the
    shipped model) then says the steps the model was trained for, not the first command's."""
    run = tmp_path / "run"
    train(tiny_cfg(steps=3, checkpoint_every=3, val_every=0), run, progress=False)
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 3
    train(tiny_cfg(steps=5, checkpoint_every=3, val_every=0), run, progress=False)
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 5
    assert "train.steps 3 -> 5" in capsys.readouterr().out
    assert [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()][-1] == 5


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_resume_is_exact(tmp_path, monkeypatch, precision):
    """A run killed mid-way under fp16 (autocast + GradScaler, on CPU too) or bf16 ends with the
    same weights, EMA, Adam moments and loss scale as an uninterrupted one."""
    monkeypatch.setattr("upstep.train.loop.native_bf16", lambda: True)  # bf16 even where emulated
    # growth_interval 1: the loss scale doubles after every finite step, so a scaler that is
    # not restored (back to init_scale) would scale the resumed steps' fp16 gradients differently
    over = dict(steps=6, checkpoint_every=3, val_every=0, mixed_precision=precision,
                grad_scaler={"init_scale": 256.0, "growth_interval": 1})
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    train(tiny_cfg(**over), straight, progress=False)
    train(tiny_cfg(**over), broken, stop_after=5, progress=False)
    assert json.loads((broken / "latest.json").read_text())["step"] == 3
    train(tiny_cfg(**over), broken, progress=False)

    def state(run):
        latest = json.loads((run / "latest.json").read_text())
        return json.loads((run / latest["path"] / "state.json").read_text())
    sa, sb = state(straight), state(broken)
    if precision == "fp16":
        assert sa["grad_scaler"]["scale"] > 256.0   # the scale moved: restoring it matters
        assert sa["grad_scaler"] == sb["grad_scaler"]
    else:
        assert "grad_scaler" not in sa                 # bf16 needs no loss scaling
    assert sa["optimizers"] == sb["optimizers"]
    a, b = _final_tensors(straight), _final_tensors(broken)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    fp32 = tmp_path / "fp32"   # mixed precision really ran: not the fp32 weights
    train(tiny_cfg(**{**over, "mixed_precision": "no", "steps": 3}), fp32, progress=False)
    x, y = _final_tensors(fp32), load_file(str(straight / "checkpoints" / "step_0000003" / "tensors.safetensors"))
    assert any(not torch.equal(x[k], y[k]) for k in x if k.startswith("module."))


def test_bf16_training_falls_back_to_float32_without_native_bf16(monkeypatch):
    """Emulated bf16 is ~20x slower than float32 on a CPU without AVX512-BF16/AMX: train in float32 and say so."""
    from upstep.train.loop import make_accelerator

    monkeypatch.setattr("upstep.train.loop.native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        acc = make_accelerator({"mixed_precision": "bf16", "device": "cpu"})
    assert acc.mixed_precision == "no"
    monkeypatch.setattr("upstep.train.loop.native_bf16", lambda: True)
    assert make_accelerator({"mixed_precision": "bf16", "device": "cpu"}).mixed_precision == "bf16"


def test_loss_goes_down_and_validation_is_logged(tmp_path):
    cfg = tiny_cfg(steps=60, lr=2e-3, checkpoint_every=60, val_every=60, log_every=1, p_terminal=1.0)
    cfg["data"]["crop"] = 32
    cfg["model"]["target"] = "latent"  # starts far from the answer: the drop is unmistakable
    train(cfg, tmp_path / "r", progress=False)
    logs = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logs]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.3 * first
    assert "val_psnr" in logs[-1] and "val_psnr_bicubic" in logs[-1]


def test_checkpoint_is_safetensors_and_json_only(tmp_path):
    train(tiny_cfg(steps=3, checkpoint_every=3, val_every=0), tmp_path / "r", progress=False)
    files = {p.name for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert files <= {"config.json", "latest.json", "log.jsonl", "state.json", "tensors.safetensors",
                     "model.safetensors"}
    assert not list((tmp_path / "r" / "checkpoints").glob(".tmp_*"))


def test_checkpoint_restores_a_frozen_batchnorm_network_and_rejects_foreign_keys(tmp_path):
    """A frozen network (every tensor a non-persistent buffer, as upstep.nn.efficientnet makes it)
    next to trained BatchNorms round-trips through save/load_checkpoint with strict key checks;
    an extra or missing tensor, or a damaged file, is an error that names the checkpoint."""
    from safetensors.torch import save_file

    from upstep.nn.efficientnet import freeze_as_buffers
    from upstep.train.checkpoint import load_checkpoint, save_checkpoint

    def net():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                   freeze_as_buffers(torch.nn.Sequential(torch.nn.Conv2d(4, 4, 1),
                                                                         torch.nn.BatchNorm2d(4))))
    a = net()
    a[1].running_mean.fill_(0.5)
    path = save_checkpoint(tmp_path / "run", 1, {"g": a}, {}, {})
    b = net()
    load_checkpoint(path, {"g": b}, {}, {})
    assert torch.equal(b[1].running_mean, a[1].running_mean)
    tensors = load_file(str(path / "tensors.safetensors"))
    save_file({**tensors, "module.g.9.weight": torch.zeros(1)}, str(path / "tensors.safetensors"))
    with pytest.raises(RuntimeError, match=r"missing \[\], unexpected \['9.weight'\]"):
        load_checkpoint(path, {"g": net()}, {}, {})
    save_file({k: v for k, v in tensors.items() if not k.endswith("1.num_batches_tracked")},
              str(path / "tensors.safetensors"))
    with pytest.raises(RuntimeError, match=r"missing \['1.num_batches_tracked'\], unexpected \[\]"):
        load_checkpoint(path, {"g": net()}, {}, {})
    damaged = (path / "tensors.safetensors").read_bytes()[:100]         # a truncated file: a clear error,
    (path / "tensors.safetensors").write_bytes(damaged)                  # naming it, and nothing deleted
    with pytest.raises(RuntimeError, match="cannot be read.*previous checkpoint"):
        load_checkpoint(path, {"g": net()}, {}, {})
    assert (path / "tensors.safetensors").read_bytes() == damaged and (path / "state.json").is_file()


def test_bad_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_config(tmp_path / "bad.json")
    cfg = tiny_cfg()
    cfg["data"]["train_dirs"] = ["does/not/exist"]
    with pytest.raises(ConfigError, match="not found"):
        train(cfg, tmp_path / "r", progress=False)


def test_time_limit_finishes_the_run_early_with_a_model(tmp_path):
    """``train.time_limit_s`` (the GPU script's wall-clock budget): the run stops at the first step
    past the limit, checkpoints there and exports the model as a finished run."""
    out = train(tiny_cfg(steps=1000, checkpoint_every=500, val_every=0, time_limit_s=1e-6), tmp_path / "r",
                progress=False)
    assert json.loads((tmp_path / "r" / "latest.json").read_text())["step"] == 1
    assert json.loads((out / "config.json").read_text())["info"]["steps"] == 1
    last = json.loads((tmp_path / "r" / "log.jsonl").read_text().splitlines()[-1])
    assert last == {"step": 1, "elapsed_s": last["elapsed_s"], "stopped": "time_limit"}  # what ship_model reads
    load_model(out)


def test_a_run_resumes_only_with_its_own_networks_and_not_past_its_end(tmp_path):
    from upstep.train.checkpoint import CheckpointError

    run = tmp_path / "run"
    train(tiny_cfg(steps=4, checkpoint_every=2, val_every=0), run, progress=False)
    other = tiny_cfg(steps=8, checkpoint_every=2, val_every=0)
    other["model"]["unet"]["block_out_channels"] = [8, 16]
    with pytest.raises(CheckpointError, match="another model"):
        train(other, run, progress=False)
    recipe = tiny_cfg(steps=8, checkpoint_every=2, val_every=0)
    recipe["recipe"] = "resshift_teacher"
    with pytest.raises(CheckpointError, match="another recipe"):
        train(recipe, run, progress=False)
    with pytest.raises(CheckpointError, match="already at step 4, past train.steps=2"):
        train(tiny_cfg(steps=2, checkpoint_every=2, val_every=0), run, progress=False)
    train(tiny_cfg(steps=6, checkpoint_every=2, val_every=0), run, progress=False)   # more steps: fine
    assert json.loads((run / "latest.json").read_text())["step"] == 6


def test_a_restart_from_step_0_logs_each_step_once_and_a_lost_latest_json_is_found_again(tmp_path):
    run = tmp_path / "run"
    train(tiny_cfg(steps=6, checkpoint_every=10, val_every=0), run, stop_after=2, progress=False)  # no checkpoint
    train(tiny_cfg(steps=3, checkpoint_every=3, val_every=0), run, progress=False)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    (run / "latest.json").unlink()
    from upstep.train.checkpoint import latest_checkpoint

    assert latest_checkpoint(run).name == "step_0000003"


def test_a_latest_json_naming_a_lost_checkpoint_or_a_damaged_state_is_handled(tmp_path):
    import shutil

    from upstep.train.checkpoint import CheckpointError, latest_checkpoint

    run = tmp_path / "run"
    train(tiny_cfg(steps=4, checkpoint_every=2, val_every=0), run, progress=False)
    shutil.rmtree(run / "checkpoints" / "step_0000004")                 # latest.json now names a lost folder
    assert latest_checkpoint(run).name == "step_0000002"
    (run / "checkpoints" / "step_0000002" / "state.json").write_text('{"step": 2, "opt')   # cut off
    (run / "latest.json").write_text("{not json")
    assert latest_checkpoint(run).name == "step_0000002"                # an unreadable latest.json: the newest
    with pytest.raises(CheckpointError, match="cannot be read"):        # one line, no JSON traceback
        train(tiny_cfg(steps=6, checkpoint_every=2, val_every=0), run, progress=False)
