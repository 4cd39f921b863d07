#!/usr/bin/env bash
# Profiles a short GPU training run: an Nsight Systems timeline (NVTX ranges data, forward,
# backward, evaluation, step) and an Nsight Compute report of the step's kernels.
# Usage: bash tools/profile.sh DATA_DIR [BUILD_DIR] [OUT_DIR]; says where each report went.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: tools/profile.sh DATA_DIR [BUILD_DIR] [OUT_DIR]}
build=${2:-build}
out=${3:-profile}
mkdir -p "$out"
run=("$build/vae_cuda" --train "$data" --epochs 1 --device cuda --no-progress)

if command -v nsys >/dev/null; then
  # Plain launches show each op under its NVTX range; graph replays show as one range per step.
  nsys profile --trace=cuda,nvtx,osrt --cuda-graph-trace=node --force-overwrite=true \
    -o "$out/timeline" "${run[@]}" --no-graph
  echo "profile: Nsight Systems timeline in $out/timeline.nsys-rep (open it in nsys-ui)"
else
  echo "profile: nsys not found; no timeline" >&2
fi

if command -v ncu >/dev/null; then
  # Steps 50-52 after warm-up: every kernel of three steps, full metric sets, source lines via -lineinfo.
  ncu --set full --import-source yes --launch-skip 800 --launch-count 60 --force-overwrite \
    -o "$out/kernels" "${run[@]}" --no-graph
  echo "profile: Nsight Compute report in $out/kernels.ncu-rep (open it in ncu-ui)"
else
  echo "profile: ncu not found; no kernel report" >&2
fi
