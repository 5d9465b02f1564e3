#!/usr/bin/env bash
# Train the GPU variants of the shipped-model configs on one GPU within a wall-clock budget:
#   fidelity-x4 (larger U-Net, mild realistic degradation), the YONOS chain x2 -> x4 -> x8
#   (Real-ESRGAN + bicubic, scale distillation), then perceptual fine-tuning of each chain stage
#   (L1 + EfficientNet-Lite0 features + projected GAN, learnable decoder).
# Usage: scripts/train_gpu.sh OUT [BUDGET_MINUTES=9]
# Writes OUT/{fidelity-x4,default-x2,default-x4,default-x8} (model folders: config.json +
# model.safetensors), the run folders under OUT/runs, and OUT/timings.json. Each stage gets a share
# of the budget as train.time_limit_s (the loop stops at the first step past it and exports).
# EXTRA="--set train.batch=2 --set data.crop=64" adds overrides to every stage (a CPU smoke run).
set -euo pipefail
OUT=${1:?usage: scripts/train_gpu.sh OUT [BUDGET_MINUTES]}
BUDGET_MIN=${2:-9}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p "$OUT/runs"
START=$(date +%s)
# shares of the budget (sum 0.73: the rest is 7 process start-ups, validation and export)
share() { $PY -c "print(max(1, int($BUDGET_MIN * 60 * $1)))"; }
run() {  # NAME CONFIG SHARE [extra args...]
    local name=$1 cfg=$2 s=$3; shift 3
    local t0=$(date +%s)
    $PY -m upstep.cli train "$cfg" --run-dir "$OUT/runs/$name" --no-progress \
        --set train.time_limit_s="$(share "$s")" "$@" ${EXTRA:-}
    echo "\"$name\": $(( $(date +%s) - t0 ))," >> "$OUT/timings.part"
}
rm -f "$OUT/timings.part"
run fidelity-x4 configs/gpu/fidelity_x4_gpu.json 0.14
run x2 configs/gpu/x2_gpu.json 0.11
run x4 configs/gpu/x4_distill_gpu.json 0.09 --set distill.teacher="$OUT/runs/x2/model"
run x8 configs/gpu/x8_distill_gpu.json 0.09 --set distill.teacher="$OUT/runs/x4/model"
for s in 2 4 8; do
    run "perceptual-x$s" configs/gpu/perceptual_gpu.json 0.10 --init-from "$OUT/runs/x$s/model" --set data.scale=$s
done
rm -rf "$OUT/fidelity-x4" "$OUT/default-x2" "$OUT/default-x4" "$OUT/default-x8"
cp -r "$OUT/runs/fidelity-x4/model" "$OUT/fidelity-x4"
for s in 2 4 8; do cp -r "$OUT/runs/perceptual-x$s/model" "$OUT/default-x$s"; done
{ echo "{"; cat "$OUT/timings.part"; echo "\"total_s\": $(( $(date +%s) - START )), \"budget_min\": $BUDGET_MIN}"; } > "$OUT/timings.json"
rm -f "$OUT/timings.part"
echo "models in $OUT: fidelity-x4 default-x2 default-x4 default-x8 ($(( $(date +%s) - START )) s)"
