#!/bin/bash
# Issue 29: measure the pre-registered candidates of docs/results/real_camera/soup_seeds/README.md.
set -e
cd "$(dirname "$0")/.."
while pgrep -f soup_seeds.sh >/dev/null; do sleep 20; done
F=runs/real_x4_fidelity_cpu/model_step1000
GPU="runs/real_camera_gpu/new_mix default-x4 --fidelity $F --tuned-from runs/real_camera_gpu/fidelity"
C=runs/blend_candidates
ship() { .venv/bin/python scripts/ship_model.py "$@"; }
for b in 0.85 1.0; do
  ship $GPU --soup runs/cpu_arm_plain --soup runs/cpu_arm_seed1 --blend $b --dest $C/soup3_$b
done
for b in 0.85 1.0; do   # 1.15 was pre-registered; ship_model refuses B > 1 (see the README)
  ship $GPU --soup runs/cpu_arm_plain --soup runs/cpu_arm_seed1 --soup runs/cpu_arm_seed2 --blend $b --dest $C/soup4s_$b
done
for s in 1 2; do
  ship $GPU --soup runs/cpu_arm_seed$s --blend 0.85 --dest $C/control_seed$s
done
D=docs/results/real_camera/soup_seeds
M=""
for m in soup3_0.85 soup3_1.0 soup4s_0.85 soup4s_1.0 control_seed1 control_seed2; do M="$M --model $m=$C/$m"; done
P=""
for m in soup3_0.85 soup3_1.0 soup4s_0.85 soup4s_1.0 control_seed1 control_seed2; do P="$P,$m:shipped"; done
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/$set --model shipped=default-x4 $M \
      --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/$set --pairs "${P#,}"
done
echo EVAL DONE
