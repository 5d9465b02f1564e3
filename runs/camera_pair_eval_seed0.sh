#!/bin/bash
# Issue 29, docs/results/real_camera/camera_pair/README.md: the seed-0 half of runs/camera_pair_eval.sh,
# measured first (see the README's deviation): Q1 needs pair_soup0 - shipped < 0 beyond 2 SE on realsr_canon.
set -e
cd "$(dirname "$0")/.."
F=runs/real_x4_fidelity_cpu/model_step1000
GPU="runs/real_camera_gpu/new_mix default-x4 --fidelity $F --tuned-from runs/real_camera_gpu/fidelity"
C=runs/blend_candidates
.venv/bin/python scripts/ship_model.py $GPU --soup runs/cpu_arm_pair --blend 0.85 --dest $C/pair_soup0
D=docs/results/real_camera/camera_pair
M="--model shipped=default-x4 --model pair_soup0=$C/pair_soup0"
M="$M --model plain0=runs/cpu_arm_plain/model --model pair0=runs/cpu_arm_pair/model"
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/$set $M --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/$set --pairs "pair_soup0:shipped,pair0:plain0"
done
echo EVAL DONE
