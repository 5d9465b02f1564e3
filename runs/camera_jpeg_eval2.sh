#!/bin/bash
# Issue 29, docs/results/camera_jpeg/README.md round 2: the soups on the JPEG-trained and control MSE ends.
set -e
cd "$(dirname "$0")/.."
C=runs/blend_candidates
for end in jpeg ctrl; do
  .venv/bin/python scripts/ship_model.py runs/real_camera_gpu/new_mix default-x4 --fidelity runs/fid_$end/model \
      --tuned-from runs/real_camera_gpu/fidelity --soup runs/cpu_arm_plain@runs/real_x4_fidelity_cpu/model_step1000 \
      --blend 0.85 --auto-strength 0.75,1 --dest $C/fid${end}_soup
done
D=docs/results/camera_jpeg/round2
M="--model shipped=default-x4 --model fidjpeg_soup=$C/fidjpeg_soup --model fidctrl_soup=$C/fidctrl_soup"
P="fidjpeg_soup:shipped,fidctrl_soup:shipped,fidjpeg_soup:fidctrl_soup,shipped:realesr-general-x4v3,fidjpeg_soup:realesr-general-x4v3"
run() {  # run OUT ARGS...
  local out=$1; shift
  .venv/bin/python benchmarks/real_camera.py --out $D/$out $M --peers realesr-general-x4v3 "$@"
  .venv/bin/python benchmarks/real_camera.py --out $D/$out --pairs "$P"
}
for q in 90 80 95; do run realsr_canon_q$q --jpeg $q; done
run realsr_canon
for set in imagenet_valsr_resshift set14 bsd100; do run $set --set $set; done
echo EVAL DONE
