#!/bin/bash
# Issue 29, docs/results/camera_jpeg/strength/README.md (round 3): auto's camera-like strength 0.75
# (shipped) against 0.625 and 0.5 on realsr_canon's LR saved as JPEG, same weights.
set -e
cd "$(dirname "$0")/.."
C=runs/blend_candidates
for s in 0.625 0.5; do
  d=$C/auto_$s; rm -rf $d; cp -r src/upstep/weights/default-x4 $d
  .venv/bin/python - "$d" "$s" <<'PY'
import json, sys
p = sys.argv[1] + "/config.json"; c = json.load(open(p))
c["info"]["auto_strength"]["camera_like"] = float(sys.argv[2])
json.dump(c, open(p, "w"), indent=1)
PY
done
D=docs/results/camera_jpeg/strength
M="--model shipped=default-x4 --model s0625=$C/auto_0.625 --model s05=$C/auto_0.5"
P="s0625:shipped,s05:shipped,shipped:realesr-general-x4v3,s0625:realesr-general-x4v3,s05:realesr-general-x4v3"
run() {  # run OUT ARGS...
  local out=$1; shift
  .venv/bin/python benchmarks/real_camera.py --out $D/$out $M --peers realesr-general-x4v3 "$@"
  .venv/bin/python benchmarks/real_camera.py --out $D/$out --pairs "$P"
}
run realsr_canon_q90 --jpeg 90
run realsr_canon_q80 --jpeg 80
run realsr_canon
echo STRENGTH DONE
