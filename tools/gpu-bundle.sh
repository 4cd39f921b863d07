#!/usr/bin/env bash
# Prepares what a lent GPU machine needs, under the device tool's 64 MiB carry limit: a portable
# build (tools/setup.sh's packages, VAE_PORTABLE=ON), just the binaries tools/gpu-check.sh runs, and
# a Fashion-MNIST subset (the first 20,000 training and all 10,000 test images) for a real training
# run, packed into BUNDLE_DIR/bundle.tar.gz. Before anything travels it checks the shared libraries each binary asks for, and names the
# gpu tests that have no quick mode for the sanitizer passes.
# Usage: bash tools/gpu-bundle.sh [BUNDLE_DIR=gpu-bundle]; then carry BUNDLE_DIR.
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
cp build-gpu/benchmarks/bench_gpu_epoch build-gpu/benchmarks/bench_evaluate "$bundle/benchmarks/"
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

# The GPU machine has glibc and the driver, and none of Debian's -dev packages. What each binary
# asks for itself (its NEEDED entries; the NVIDIA libraries bring their own needs there) must be
# glibc's, libcurand.so.10 (test_philox where this toolkit has no static archive: tools/gpu-check.sh
# finds it there) or cuBLAS/cuDNN (vae_bench: benchmarks/gpu_report.sh finds them). Anything else
# (libfmt, libgomp, libstdc++, libpng, libz...) is a portable build gone wrong.
allowed='^(lib(c|m|dl|rt|pthread)\.so\.[0-9]+|ld-linux-x86-64\.so\.2|libcurand\.so\.10|libcublas(Lt)?\.so\.[0-9]+|libcudnn\.so\.[0-9]+)$'
unexpected=0
for bin in "$bundle"/vae_cuda "$bundle"/tests/* "$bundle"/benchmarks/*; do
  for lib in $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    [[ "$lib" =~ $allowed ]] || { echo "gpu-bundle: $(basename "$bin") needs $lib, which the GPU machine lacks" >&2; unexpected=1; }
    [[ "$lib" == libcurand.so.10 ]] && echo "gpu-bundle: $(basename "$bin") links libcurand.so.10 dynamically"
  done
done
((unexpected == 0)) || exit 1
for bin in "$bundle"/tests/test_*_gpu; do
  grep -q VAE_GPU_TEST_QUICK "$bin" || echo "gpu-bundle: note: $(basename "$bin") ignores VAE_GPU_TEST_QUICK"
done
# The binaries carry sm_90 code for every kernel instantiation (about 6 MiB each), 81 MiB in all at
# the fused step's introduction: more than the device tool carries. Packed (gzip, found on any
# machine) they take about 35 MiB; tools/gpu-check.sh unpacks bundle.tar.gz where it finds one.
tar -C "$bundle" -czf "$bundle.tar.gz" .
rm -rf "$bundle"
mkdir -p "$bundle"
mv "$bundle.tar.gz" "$bundle/bundle.tar.gz"
size=$(stat -c %s "$bundle/bundle.tar.gz")
echo "gpu-bundle: $bundle/bundle.tar.gz, $((size / 1048576)) MiB of the 64 MiB carry limit"
((size < 64 * 1048576)) || { echo "gpu-bundle: too large to carry" >&2; exit 1; }
