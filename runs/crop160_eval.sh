#!/bin/bash
# Issue 29: measure the pre-registered candidates of docs/results/real_camera/crop160/README.md.
set -e
cd "$(dirname "$0")/.."
while pgrep -f crop160.sh >/dev/null; do sleep 20; done
F=runs/real_x4_fidelity_cpu/model_step1000
GPU="runs/real_camera_gpu/new_mix default-x4 --fidelity $F --tuned-from runs/real_camera_gpu/fidelity"
C=runs/blend_candidates
for s in 0 1; do
  .venv/bin/python scripts/ship_model.py $GPU --soup runs/cpu_arm_c160_seed$s --blend 0.85 --dest $C/c160_seed$s
done
for s in 1 2; do   # the 128-px controls of soup_seeds, rebuilt
  .venv/bin/python scripts/ship_model.py $GPU --soup runs/cpu_arm_seed$s --blend 0.85 --dest $C/control_seed$s
done
D=docs/results/real_camera/crop160
M=""; P=""
for m in c160_seed0 c160_seed1 control_seed1 control_seed2; do M="$M --model $m=$C/$m"; P="$P,$m:shipped"; done
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/$set --model shipped=default-x4 $M \
      --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/$set --pairs "${P#,}"
done
echo EVAL DONE
