#!/usr/bin/env bash
# Prepares what a lent GPU machine needs, under the device tool's 64 MiB carry limit: a portable
# build (tools/setup.sh's packages, VAE_PORTABLE=ON), just the binaries tools/gpu-check.sh runs, and
# a Fashion-MNIST subset (the first 20,000 training and all 10,000 test images) for a real training
# run. Usage: bash tools/gpu-bundle.sh [BUNDLE_DIR=gpu-bundle]; then carry BUNDLE_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
bundle=${1:-gpu-bundle}
bash tools/setup.sh build >/dev/null  # installs the packages; the portable build reuses them
cmake -S . -B build-gpu -DVAE_PORTABLE=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-gpu -j "$(nproc)"
bash tools/fetch-data.sh fashion-mnist data/fashion-mnist

rm -rf "$bundle"
mkdir -p "$bundle/tests" "$bundle/benchmarks" "$bundle/data"
cp build-gpu/vae_cuda "$bundle/"
cp build-gpu/tests/test_*_gpu build-gpu/tests/test_{philox,adam,gradients,model,gemm_plan} "$bundle/tests/"
cp build-gpu/benchmarks/bench_gpu_epoch "$bundle/benchmarks/"
[[ -x build-gpu/benchmarks/vae_bench ]] && cp build-gpu/benchmarks/vae_bench "$bundle/benchmarks/"
/usr/bin/python3 - data/fashion-mnist "$bundle/data" <<'PY'
import gzip, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for prefix, keep in (("train", 20000), ("t10k", 10000)):
    for kind, item in (("images-idx3", 784), ("labels-idx1", 1)):
        name = f"{prefix}-{kind}-ubyte.gz"
        raw = gzip.open(f"{src}/{name}").read()
        rank = raw[3]
        dims = list(struct.unpack(f">{rank}I", raw[4:4 + 4 * rank]))
        header_end = 4 + 4 * rank
        dims[0] = min(dims[0], keep)
        body = raw[header_end:header_end + dims[0] * item]
        with gzip.open(f"{dst}/{name}", "wb") as f:
            f.write(raw[:4] + struct.pack(f">{rank}I", *dims) + body)
PY
du -sh "$bundle"
