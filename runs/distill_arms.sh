#!/bin/bash
# Issue 29: the two pre-registered distillation arms (docs/results/real_camera/distill/README.md),
# each 1200 steps, then an exact resume to 2400; model_step1200/ keeps the first segment's EMA export.
set -e
cd "$(dirname "$0")/.."
for arm in distill_gan distill_plain; do
  extra=""
  [ "$arm" = distill_plain ] && extra="--set perceptual.gan_weight=0"
  for n in 1200 2400; do
    if [ ! -f runs/$arm/model_step$n/model.safetensors ]; then
      .venv/bin/upstep train configs/real_x4_distill.json --run-dir runs/$arm $extra \
          --set train.steps=$n --no-progress
      cp -r runs/$arm/model runs/$arm/model_step$n
    fi
  done
done
