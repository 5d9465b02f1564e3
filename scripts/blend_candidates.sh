#!/usr/bin/env bash
# Candidates for a blended default-x4 (issue 29), compared on the dev sets in one run each.
#
#   bash scripts/blend_candidates.sh ARM_RUN FIDELITY START OUT B1,B2,...
#
# For each B, scripts/ship_model.py writes θ_FIDELITY + B (θ_ARM − θ_START) into
# runs/blend_candidates/blend_B (model weights stay out of the tree). START is the model the
# perceptual arm was fine-tuned from; FIDELITY is that model trained on further (or START itself).
# Then benchmarks/real_camera.py compares the shipped default-x4, the fidelity end and every
# candidate with bicubic and general-x4v3, paired per image, on realsr_canon, ImageNet-Val, Set14
# and BSD100, into OUT/<set>/. These are dev sets: a B picked here is reported as a dev figure.
set -euo pipefail
arm=$1 fid=$2 start=$3 out=$4 blends=$5
py=${PYTHON:-python}
fid_model=$fid; [ -f "$fid/model/config.json" ] && fid_model=$fid/model
models=(--model shipped=default-x4 --model "fidelity_end=$fid_model")
for b in ${blends//,/ }; do
  "$py" scripts/ship_model.py "$arm" "blend_$b" --fidelity "$fid" --tuned-from "$start" --blend "$b" \
      --dest "runs/blend_candidates/blend_$b" >/dev/null
  models+=(--model "blend_$b=runs/blend_candidates/blend_$b")
done
for set in realsr_canon imagenet_valsr_resshift set14 bsd100; do
  "$py" benchmarks/real_camera.py --set "$set" --out "$out/$set" "${models[@]}" --peers realesr-general-x4v3 >/dev/null
  echo "$out/$set/results.md"
done
