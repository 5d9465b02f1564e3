#!/bin/bash
# Issue 29: measure the pre-registered candidates of docs/results/real_camera/independent_arms/README.md.
set -e
cd "$(dirname "$0")/.."
while pgrep -f independent_arms.sh >/dev/null; do sleep 20; done
F=runs/real_x4_fidelity_cpu/model_step1000
GPU="runs/real_camera_gpu/new_mix default-x4 --fidelity $F --tuned-from runs/real_camera_gpu/fidelity"
C=runs/blend_candidates
ship() { .venv/bin/python scripts/ship_model.py "$@"; }
for b in 0.85 1.0; do
  ship $GPU --run-share 0.5 --soup runs/cpu_arm_plain --soup runs/cpu_arm_seed1 --soup runs/cpu_arm_seed2 \
      --blend $b --dest $C/share3_$b
  ship $GPU --soup runs/cpu_arm_plain --soup runs/cpu_arm_stage1@runs/real_camera_gpu/fidelity/model \
      --blend $b --dest $C/soup_start_$b
  ship $GPU --soup runs/cpu_arm_plain --soup runs/cpu_arm_b32 --blend $b --dest $C/soup_b32_$b
done
D=docs/results/real_camera/independent_arms
.venv/bin/python benchmarks/weight_changes.py --out $D/weight_changes \
    --member gpu=runs/real_camera_gpu/new_mix@runs/real_camera_gpu/fidelity/model \
    --member plain=runs/cpu_arm_plain@$F --member seed1=runs/cpu_arm_seed1@$F \
    --member stage1=runs/cpu_arm_stage1@runs/real_camera_gpu/fidelity/model --member b32=runs/cpu_arm_b32@$F
M=""; P=""
for m in share3_0.85 share3_1.0 soup_start_0.85 soup_start_1.0 soup_b32_0.85 soup_b32_1.0; do
  M="$M --model $m=$C/$m"; P="$P,$m:shipped"
done
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/$set --model shipped=default-x4 $M \
      --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/$set --pairs "${P#,}"
done
echo EVAL DONE
