#!/bin/bash
# Issue 29, docs/results/camera_jpeg/README.md: the pre-registered measurement. realsr_canon as it is and
# with its LR saved as JPEG (libjpeg) at Q = 95, 90, 80; ImageNet-Val, Set14, BSD100 as they are.
set -e
cd "$(dirname "$0")/.."
F=runs/real_x4_fidelity_cpu/model_step1000
C=runs/blend_candidates
.venv/bin/python scripts/ship_model.py runs/real_camera_gpu/new_mix default-x4 --fidelity $F \
    --tuned-from runs/real_camera_gpu/fidelity --soup runs/cpu_arm_jpeg --blend 0.85 --auto-strength 0.75,1 \
    --dest $C/jpeg_soup
NEW=runs/camera_detector_jpeg
D=docs/results/camera_jpeg
M="--model shipped=default-x4 --model shipped_newdet=default-x4 --model jpeg_soup=$C/jpeg_soup"
M="$M --model jpeg_soup_olddet=$C/jpeg_soup --detector shipped_newdet=$NEW --detector jpeg_soup=$NEW"
P="shipped_newdet:shipped,jpeg_soup:shipped_newdet,jpeg_soup_olddet:shipped,shipped:realesr-general-x4v3,shipped_newdet:realesr-general-x4v3,jpeg_soup:realesr-general-x4v3"
run() {  # run OUT ARGS...
  local out=$1; shift
  .venv/bin/python benchmarks/real_camera.py --out $D/$out $M --peers realesr-general-x4v3 "$@"
  .venv/bin/python benchmarks/real_camera.py --out $D/$out --pairs "$P"
}
for q in 90 80 95; do run realsr_canon_q$q --jpeg $q; done
run realsr_canon
for set in imagenet_valsr_resshift set14 bsd100; do run $set --set $set; done
echo EVAL DONE
