#!/usr/bin/env bash
# The whole benchmark report on a lent GPU machine, in one run: PyTorch's example first
# (pytorch_baseline.py), then vae_bench with those rows merged in, then the chart. $OUT (default
# /tmp/vae-bench) receives pytorch.json, report.json, report.md, report.png and the log; copy the
# first four into benchmarks/results/ to commit them.
# Usage: VAE_COMMIT=<sha> bash benchmarks/gpu_report.sh BUILD_DIR [DATA_DIR] [PYTORCH_EPOCHS]
# BUILD_DIR is a VAE_PORTABLE=ON build made on the development machine (see README).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: benchmarks/gpu_report.sh BUILD_DIR [DATA_DIR] [PYTORCH_EPOCHS]}
data=${2:-}
torch_epochs=${3:-2}
out=${OUT:-/tmp/vae-bench}
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1

# cuBLAS, cuBLASLt and cuDNN are linked dynamically; that machine has them in the CUDA toolkit
# or in PyTorch's nvidia-* wheels. Put whichever directories hold them on the library path.
for lib in libcublas.so.13 libcublasLt.so.13 libcudnn.so.9; do
  dir=$( (find /usr/local/cuda*/ -name "$lib" 2>/dev/null;
          python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null |
            xargs -I{} find {} -name "$lib" 2>/dev/null) | head -1 | xargs -r dirname)
  [[ -n "$dir" ]] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
ldd "$build/benchmarks/vae_bench" | grep -E "cublas|cudnn|not found"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv

data_flag=()
[[ -n "$data" ]] && data_flag=(--data "$data")
echo "== pytorch_baseline.py"
PYTHONUNBUFFERED=1 python3 benchmarks/pytorch_baseline.py "${data_flag[@]}" --epochs "$torch_epochs" \
  --json "$out/pytorch.json"
echo "   exit $?"
merge=()
[[ -s "$out/pytorch.json" ]] && merge=(--merge "$out/pytorch.json")
echo "== vae_bench"
"$build/benchmarks/vae_bench" "${data_flag[@]}" "${merge[@]}" --json "$out/report.json" --markdown "$out/report.md"
echo "   exit $?"
echo "== plot_report.py"
python3 benchmarks/plot_report.py "$out/report.json" "$out/report.png"
echo "   exit $?"
