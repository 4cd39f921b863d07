#!/usr/bin/env bash
# Installs what the build needs from Debian (only the packages that are missing), then configures
# and builds into BUILD_DIR (default build/). Shared by tools/train.sh and tools/test.sh; extra
# package names (the test suite's PyTorch) may follow the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true

bash tools/install-packages.sh cmake g++ make libfmt-dev libcli11-dev nlohmann-json3-dev zlib1g-dev \
  libgtest-dev libgmock-dev libpng-dev libxxhash-dev libtoml11-dev libcpp-httplib-dev pkg-config \
  python3-matplotlib "$@"

if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "setup: the CUDA toolkit (nvcc) is required to build; install CUDA 13 under /usr/local/cuda" >&2
  exit 1
fi

cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
