#!/bin/bash
# Issue 29: measure round 2's pre-registered candidates of docs/results/real_camera/independent_arms/README.md.
set -e
cd "$(dirname "$0")/.."
while pgrep -f independent_arms.sh >/dev/null; do sleep 20; done
F=runs/real_x4_fidelity_cpu/model_step1000
G=runs/real_camera_gpu
GPU="$G/new_mix default-x4 --fidelity $F --tuned-from $G/fidelity"
C=runs/blend_candidates
for b in 0.85 1.0; do
  .venv/bin/python scripts/ship_model.py $GPU --soup runs/cpu_arm_stage1@$G/fidelity/model --soup runs/cpu_arm_plain \
      --soup runs/cpu_arm_seed1 --blend $b --dest $C/start2_$b
  .venv/bin/python scripts/ship_model.py $GPU --soup runs/cpu_arm_cont@$G/fidelity_cont/model --soup runs/cpu_arm_plain \
      --blend $b --dest $C/start3_$b
done
D=docs/results/real_camera/independent_arms
.venv/bin/python benchmarks/weight_changes.py --out $D/weight_changes_round2 \
    --member gpu=$G/new_mix@$G/fidelity/model --member stage1=runs/cpu_arm_stage1@$G/fidelity/model \
    --member cont=runs/cpu_arm_cont@$G/fidelity_cont/model --member plain=runs/cpu_arm_plain@$F
M=""; P=""
for m in start2_0.85 start2_1.0 start3_0.85 start3_1.0; do M="$M --model $m=$C/$m"; P="$P,$m:shipped"; done
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/round2/$set --model shipped=default-x4 $M \
      --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/round2/$set --pairs "${P#,}"
done
echo EVAL DONE
