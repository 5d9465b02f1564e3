#!/bin/bash
# Issue 29: the pre-registered arms of docs/results/real_camera/independent_arms/README.md,
# each to half its steps, then an exact resume to the end; model_stepN/ keeps each segment's EMA export.
set -e
cd "$(dirname "$0")/.."
arm() {  # arm NAME INIT HALF FULL [--set ...]
  local name=$1 init=$2 half=$3 full=$4; shift 4
  for n in $half $full; do
    if [ ! -f runs/$name/model_step$n/model.safetensors ]; then
      .venv/bin/upstep train configs/real_x4_perceptual.json --run-dir runs/$name --init-from $init \
          --set perceptual.usm_target=false --set perceptual.ldl_weight=0 --set seed=0 \
          --set train.steps=$n --set train.log_every=50 --set train.val_every=$half \
          --set train.checkpoint_every=100 "$@" --no-progress
      cp -r runs/$name/model runs/$name/model_step$n
    fi
  done
}
arm cpu_arm_stage1 runs/real_camera_gpu/fidelity/model 1200 2400
arm cpu_arm_b32 runs/real_x4_fidelity_cpu/model_step1000 300 600 --set train.batch=32
arm cpu_arm_cont runs/real_camera_gpu/fidelity_cont/model 1200 2400   # round 2
echo ARMS DONE
