#!/usr/bin/env bash
# The README's train command: builds, gets MNIST (or, when it cannot be downloaded, Fashion-MNIST
# from Debian's package), and trains with vae_cuda. Extra arguments go to vae_cuda, e.g. --epochs 3.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh build

data=data/mnist
status=0
bash tools/fetch-data.sh mnist "$data" || status=$?
if ((status == 3)); then
  echo "train: MNIST could not be downloaded here; training on Fashion-MNIST (same format) instead"
  data=data/fashion-mnist
  bash tools/fetch-data.sh fashion-mnist "$data"
elif ((status != 0)); then
  exit "$status"
fi

exec build/vae_cuda --train "$data" --out out "$@"
