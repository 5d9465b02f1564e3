"""`accelerate launch` with two processes (CPU, gloo): the multi-GPU path without GPUs.
About 20 s each on the 2-core development machine (process start-up dominates), so they run
with every other test, CI included."""
import os
import subprocess
import sys
from pathlib import Path

from upstep.model import load_model

ROOT = Path(__file__).resolve().parents[1]


def test_two_process_training_writes_one_model(tmp_path):
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "upstep.cli", "train",
           str(ROOT / "configs" / "sr_x4_tiny.json"), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_model(tmp_path / "run" / "model")
    assert model.scale == 4
    # the main process alone writes: one log line per logged step, not two
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    steps = [l for l in lines if '"step"' in l]
    assert len(steps) == len({l.split(",")[0] for l in steps})


def test_two_process_yonos_chain_runs_every_stage(tmp_path):
    """The chain under `accelerate launch`: each stage's model is written by the main process and
    every process waits for it (train's last barrier) before the next stage loads it as teacher."""
    import json

    from upstep.config import load_config

    stage = load_config("sr_x4_tiny.json")
    stage["train"].update(steps=2, checkpoint_every=2, val_every=0)
    x2 = json.loads(json.dumps(stage))
    x2["data"]["scale"], x2["name"] = 2, "x2"
    x4 = {**json.loads(json.dumps(stage)), "recipe": "scale_distill", "name": "x4"}
    del x4["model"]
    cfg = tmp_path / "chain.json"
    cfg.write_text(json.dumps({"recipe": "yonos_chain", "defaults": {"train": {"weight_decay": 0.01}}, "stages": [x2, x4]}))
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "upstep.cli", "train",
           str(cfg), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert load_model(tmp_path / "run" / "stage1_x4" / "model").scale == 4
    for k in ("stage0_x2", "stage1_x4"):   # the chain's defaults reached every stage
        assert json.loads((tmp_path / "run" / k / "config.json").read_text())["train"]["weight_decay"] == 0.01
