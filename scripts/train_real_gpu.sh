#!/usr/bin/env bash
# Issue 29 on one GPU: the real-camera x4 recipe and its 2x2 ablation (degradation mix x USM targets),
# within a wall-clock budget.
#   stage 1 (S1 s): the fidelity stage of default-x4 (configs/gpu/real_x4_fidelity_gpu.json), and, for
#                   S1 + S2 s beside everything else, a fidelity-x4 candidate on the large U-Net
#                   (configs/gpu/real_fidelity_x4_large_gpu.json);
#   stage 2 (S2 s): four perceptual arms from the stage-1 model, in parallel
#                   (configs/gpu/real_x4_perceptual_gpu.json):
#                     old_mix     Real-ESRGAN 0.7 + bicubic 0.3, plain targets (the shipped c3 recipe's data)
#                     old_mix_usm the same with USM targets
#                     new_mix     realesrgan_ref 0.6 + camera_blur 0.4, plain targets
#                     new_mix_usm the same with USM targets (the config as written)
# Usage: scripts/train_real_gpu.sh OUT [S1=150] [S2=300]
# Writes OUT/runs/<name>/ (config.json, log.jsonl, model/), OUT/runs/<name>.out (stdout+stderr) and
# OUT/timings.json. EXTRA="--set train.batch=2 --set data.crop=64" adds overrides to every run (a CPU
# smoke run); PYTHON picks the interpreter.
# The shipped run (2026-12-04, one H200 lent through the device tool, 16 cores, 3 threads per run):
#   python scripts/pack_train_pool.py .gpu_data      (the training pool as 192-px crops, 18 MB)
#   on the GPU machine: UPSTEP_DATA=.gpu_data PYTHON=python3 bash scripts/train_real_gpu.sh /tmp/o 150 300
#                       python3 scripts/gpu_pack_runs.py /tmp/o/runs runs.tar.gz  (the shipped run used a copy of it from the carried folder)
# Its logs are in docs/results/real_camera/train_logs.
set -uo pipefail
OUT=${1:?usage: scripts/train_real_gpu.sh OUT [S1] [S2]}
S1=${2:-150}
S2=${3:-300}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
mkdir -p "$OUT/runs"
THREADS=$(( $(nproc) / 5 > 0 ? $(nproc) / 5 : 1 ))
START=$(date +%s)
run() {  # NAME CONFIG LIMIT_S [extra args...]
    local name=$1 cfg=$2 limit=$3; shift 3
    OMP_NUM_THREADS=$THREADS $PY -m upstep.cli train "$cfg" --run-dir "$OUT/runs/$name" --no-progress \
        --set train.time_limit_s="$limit" "$@" ${EXTRA:-} > "$OUT/runs/$name.out" 2>&1
    echo "$name exit $? after $(( $(date +%s) - START )) s"
}
run fidelity_large configs/gpu/real_fidelity_x4_large_gpu.json $(( S1 + S2 )) &
LARGE=$!
run fidelity configs/gpu/real_x4_fidelity_gpu.json "$S1"
INIT="$OUT/runs/fidelity/model"
OLD='{"realesrgan": 0.7, "bicubic": 0.3}'
NEW='{"realesrgan_ref": 0.6, "camera_blur": 0.4}'
P=configs/gpu/real_x4_perceptual_gpu.json
run old_mix "$P" "$S2" --init-from "$INIT" --set "data.degradation=$OLD" --set perceptual.usm_target=false &
run old_mix_usm "$P" "$S2" --init-from "$INIT" --set "data.degradation=$OLD" --set perceptual.usm_target=true &
run new_mix "$P" "$S2" --init-from "$INIT" --set "data.degradation=$NEW" --set perceptual.usm_target=false &
run new_mix_usm "$P" "$S2" --init-from "$INIT" --set "data.degradation=$NEW" --set perceptual.usm_target=true &
wait
echo "{\"total_s\": $(( $(date +%s) - START )), \"s1\": $S1, \"s2\": $S2, \"threads_per_run\": $THREADS}" > "$OUT/timings.json"
