#!/bin/bash
# Issue 29, docs/results/camera_jpeg/README.md round 2: default-x4's fidelity end (theta_mse,
# runs/real_x4_fidelity_cpu/model_step1000) trained 1000 more MSE steps with its own recipe, once with half
# of the camera class saved as JPEG (camera_jpeg) and once, as the control, with its mix unchanged.
set -e
cd "$(dirname "$0")/.."
fid() {  # fid NAME MIX
  local name=$1 mix=$2
  if [ ! -f runs/$name/model/model.safetensors ]; then
    .venv/bin/upstep train configs/real_x4_fidelity.json --run-dir runs/$name \
        --init-from runs/real_x4_fidelity_cpu/model_step1000 --set train.steps=1000 --set train.batch=16 \
        --set train.lr=0.00025 --set train.lr_schedule=constant --set train.warmup=50 \
        --set train.checkpoint_every=250 --set train.val_every=100000 --set "data.degradation=$mix" --no-progress
  fi
}
fid fid_jpeg '{"bicubic": 0.25, "camera_blur": 0.2, "camera_jpeg": 0.2, "realesrgan_mild": 0.35}'
fid fid_ctrl '{"bicubic": 0.25, "camera_blur": 0.4, "realesrgan_mild": 0.35}'
echo FID DONE
