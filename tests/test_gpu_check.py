"""scripts/gpu_check.sh: without CUDA it says so and exits 0; its Python side runs end to end
on a CPU in smoke mode (tiny sizes), so the GPU check is exercised where no GPU is lent."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA device" in proc.stdout and "nothing measured" in proc.stdout
    assert not out.exists()                                  # no file that could pass for a result
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh")], env=env, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_gpu_check_runs_end_to_end_in_cpu_smoke_mode(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("UPSTEP_DATA", os.environ.get("UPSTEP_DATA", ""))  # the script sets it; restore after
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "res"
    assert mod.main(["--out", str(out), "--device", "cpu", "--smoke", "--skip-tests", "--train-steps", "2",
                     "--size", "16", "--runs", "2"]) == 0
    res = json.loads((out / "gpu_check.json").read_text())
    assert res["smoke"] is True and res["machine"]["device"] == "cpu"
    tr = res["train_tiny_sd"]
    assert tr["steps"] == 2 and tr["mixed_precision"] == "bf16" and tr["loss_finite"]
    up = res["upscale"]
    assert up["input"] == [16, 16] and up["output"] == [64, 64] and up["steps"] == 1
    for dt in ("fp32", "bf16"):  # on CUDA: fp16 and bf16; upstep refuses float16 on a CPU
        assert len(up[dt]["runs_s"]) == 2 and up[dt]["median_s"] > 0 and up[dt]["output_finite"]
