#!/bin/bash
# Issue 29: the pre-registered arm of docs/results/camera_jpeg/README.md: the CPU plain arm's recipe
# (runs/cpu_arm_plain) with half of the camera class saved as JPEG (camera_jpeg: camera_blur's LR
# then JPEG of quality 70-95), seed 0; to half its steps, then an exact resume to the end;
# model_stepN/ keeps each segment's EMA export.
set -e
cd "$(dirname "$0")/.."
arm() {  # arm NAME SEED
  local name=$1 seed=$2
  for n in 1200 2400; do
    if [ ! -f runs/$name/model_step$n/model.safetensors ]; then
      .venv/bin/upstep train configs/real_x4_perceptual.json --run-dir runs/$name \
          --init-from runs/real_x4_fidelity_cpu/model_step1000 \
          --set perceptual.usm_target=false --set perceptual.ldl_weight=0 --set seed=$seed \
          --set 'data.degradation={"realesrgan_ref": 0.6, "camera_blur": 0.2, "camera_jpeg": 0.2}' \
          --set train.steps=$n --set train.log_every=50 --set train.val_every=1200 \
          --set train.checkpoint_every=100 --no-progress
      cp -r runs/$name/model runs/$name/model_step$n
    fi
  done
}
arm cpu_arm_jpeg "${1:-0}"
echo ARMS DONE
