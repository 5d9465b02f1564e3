#!/usr/bin/env bash
# Candidates for a blended default-x4 (issue 29), compared on four dev sets in one run each.
#
#   bash scripts/blend_candidates.sh ARM_RUN START OUT B1,B2,... LABEL=FIDELITY [LABEL=FIDELITY ...]
#
# For each fidelity model and each B, scripts/ship_model.py writes
# θ_FIDELITY + B (θ_ARM − θ_START) (task arithmetic) into runs/blend_candidates/LABEL_B (weights stay
# out of the tree). START is the model the perceptual arm was fine-tuned from; each FIDELITY is
# START trained on further with MSE (or START itself). Then benchmarks/real_camera.py compares the
# shipped default-x4, each fidelity end (mse_LABEL) and every candidate (LABEL_B) with bicubic and
# general-x4v3, paired per image, on realsr_canon, ImageNet-Val, Set14 and BSD100, into OUT/<set>/.
# These are dev sets: a candidate picked here is reported as a dev figure.
set -euo pipefail
arm=$1 start=$2 out=$3 blends=$4
shift 4
py=${PYTHON:-python}
models=(--model shipped=default-x4)
for spec in "$@"; do
  label=${spec%%=*} fid=${spec#*=}
  models+=(--model "mse_$label=$fid")
  for b in ${blends//,/ }; do
    "$py" scripts/ship_model.py "$arm" "${label}_$b" --fidelity "$fid" --tuned-from "$start" --blend "$b" \
        --dest "runs/blend_candidates/${label}_$b" >/dev/null
    models+=(--model "${label}_$b=runs/blend_candidates/${label}_$b")
  done
done
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  "$py" benchmarks/real_camera.py --set "$set" --out "$out/$set" "${models[@]}" --peers realesr-general-x4v3 >/dev/null
  echo "$out/$set/results.md"
done
