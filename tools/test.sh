#!/usr/bin/env bash
# The README's test command: builds, fetches the Fashion-MNIST the training tests read, and runs the
# whole ctest suite (GPU tests skip themselves on machines without a GPU; the parity suite needs
# Debian's PyTorch, the browser test Debian's chromium and playwright-core from npm, the fuzz test
# installs its own clang).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh build python3-torch python3-torchvision chromium
command -v npm >/dev/null || bash tools/install-packages.sh npm
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
bash tools/fetch-data.sh fashion-mnist data/fashion-mnist
ctest --test-dir build --output-on-failure -j "$(nproc)"
