#!/bin/bash
# Issue 29: measure the pre-registered models of docs/results/real_camera/camera_pair/README.md.
set -e
cd "$(dirname "$0")/.."
while pgrep -f camera_pair_arms.sh >/dev/null; do sleep 20; done
F=runs/real_x4_fidelity_cpu/model_step1000
GPU="runs/real_camera_gpu/new_mix default-x4 --fidelity $F --tuned-from runs/real_camera_gpu/fidelity"
C=runs/blend_candidates
ship() { .venv/bin/python scripts/ship_model.py "$@"; }
ship $GPU --soup runs/cpu_arm_seed1 --blend 0.85 --dest $C/control_seed1
ship $GPU --soup runs/cpu_arm_pair --blend 0.85 --dest $C/pair_soup0
ship $GPU --soup runs/cpu_arm_pair_seed1 --blend 0.85 --dest $C/pair_soup1
for b in 0.85 1.0; do
  ship $GPU --run-share 0.5 --soup runs/cpu_arm_pair --soup runs/cpu_arm_pair_seed1 --blend $b --dest $C/pairavg_$b
done
D=docs/results/real_camera/camera_pair
M="--model shipped=default-x4"
for m in control_seed1 pair_soup0 pair_soup1 pairavg_0.85 pairavg_1.0; do M="$M --model $m=$C/$m"; done
M="$M --model plain0=runs/cpu_arm_plain/model --model plain1=runs/cpu_arm_seed1/model"
M="$M --model pair0=runs/cpu_arm_pair/model --model pair1=runs/cpu_arm_pair_seed1/model"
P="pair_soup0:shipped,pair_soup1:control_seed1,pair0:plain0,pair1:plain1,control_seed1:shipped"
P="$P,pairavg_0.85:shipped,pairavg_1.0:shipped"
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/$set $M --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/$set --pairs "$P"
done
echo EVAL DONE
