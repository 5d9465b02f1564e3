#!/usr/bin/env bash
# GPU check, at most ~8 minutes on one GPU:  bash scripts/gpu_check.sh OUT_DIR
#   1. the test suite on the CUDA machine (training and upstep.load run on the GPU there), <= 4 min
#   2. configs/gpu/sd_tiny_check.json: 300 steps of a tiny SD-shaped model (bf16, gradient
#      checkpointing, SDPA attention, EMA) from a tiny random SD folder
#   3. 1-step x4 upscaling of a 512x512 input to 2048x2048 with an SD-1.5-shaped model, fp16 and
#      bf16, median of 5 after a warm-up, peak GPU memory
# writes OUT_DIR/gpu_check.json (copy it to docs/results/gpu/ to publish). Exit 1 if a phase failed.
# Without CUDA it says so and exits 0, writing nothing. PYTHON picks the interpreter
# (default: .venv/bin/python if present, else python3).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
    echo "usage: bash scripts/gpu_check.sh OUT_DIR" >&2
    exit 2
fi
PY=${PYTHON:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY cannot import torch; run scripts/setup.sh (with your CUDA torch installed first)" >&2
    exit 1
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: no CUDA device visible to torch $("$PY" -c 'import torch; print(torch.__version__)'); skipped, nothing measured or written"
    exit 0
fi
exec timeout 480 "$PY" scripts/gpu_check.py --out "$1"
