#!/bin/bash
# Issue 29: measure the pre-registered distillation candidates (docs/results/real_camera/distill/README.md)
set -e
cd "$(dirname "$0")/.."
while pgrep -f distill_arms.sh >/dev/null; do sleep 20; done
F=runs/real_x4_fidelity_cpu/model_step1000
for arm in distill_gan distill_plain; do
  .venv/bin/python scripts/ship_model.py runs/$arm default-x4 --fidelity $F --dest runs/blend_candidates/$arm
done
D=docs/results/real_camera/distill
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  .venv/bin/python benchmarks/real_camera.py --set $set --out $D/$set --model shipped=default-x4 \
      --model distill_gan=runs/blend_candidates/distill_gan --model distill_plain=runs/blend_candidates/distill_plain \
      --peers realesr-general-x4v3
  .venv/bin/python benchmarks/real_camera.py --out $D/$set \
      --pairs distill_gan:shipped,distill_plain:shipped,distill_gan:realesr-general-x4v3,distill_plain:realesr-general-x4v3
done
.venv/bin/python benchmarks/real_camera.py --set realsr_canon --out $D/curve_realsr_canon \
    --model gan_1200=runs/distill_gan/model_step1200 --model gan_2400=runs/distill_gan/model_step2400 \
    --model plain_1200=runs/distill_plain/model_step1200 --model plain_2400=runs/distill_plain/model_step2400 \
    --peers ""
echo EVAL DONE
