"""`accelerate launch` with two processes (CPU, gloo): the multi-GPU path without GPUs.
About 20 s on the 2-core development machine (process start-up dominates), so it runs with
every other test, CI included."""
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
