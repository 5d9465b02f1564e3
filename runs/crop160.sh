#!/bin/bash
# Issue 29: the pre-registered crop-160 arms of docs/results/real_camera/crop160/README.md,
# each 1200 steps, then an exact resume to 2400; model_step1200/ keeps the first segment's EMA export.
set -e
cd "$(dirname "$0")/.."
for s in 0 1; do
  for n in 1200 2400; do
    if [ ! -f runs/cpu_arm_c160_seed$s/model_step$n/model.safetensors ]; then
      .venv/bin/upstep train configs/real_x4_perceptual.json --run-dir runs/cpu_arm_c160_seed$s \
          --init-from runs/real_x4_fidelity_cpu/model_step1000 --set perceptual.usm_target=false \
          --set perceptual.ldl_weight=0 --set seed=$s --set data.crop=160 --set train.steps=$n \
          --set train.log_every=50 --set train.val_every=600 --set train.checkpoint_every=200 --no-progress
      cp -r runs/cpu_arm_c160_seed$s/model runs/cpu_arm_c160_seed$s/model_step$n
    fi
  done
done
echo ARMS DONE
