#!/usr/bin/env bash
# Every GPU check in one run, for a lent GPU machine (../shared/DEVICE.md): the device and driver,
# the gpu tests, a 10-epoch GPU training run, the GPU epoch benchmark, --evaluate with K = 5000 on
# that run's checkpoint and its benchmark, the gpu tests under compute-sanitizer's four tools, and a
# JSON report. Steps run in order of importance and each is cut short to fit VAE_CHECK_BUDGET
# seconds (default 480), so one slow tool cannot eat the session. $OUT (default /tmp/gpu-check)
# receives summary.txt, report.json, bench_gpu_epoch.json, evaluate_gpu_k5000.json,
# bench_evaluate.json and logs.tar.gz (the device tool returns at most eight files). Every binary's
# shared libraries are checked first (step `libraries`), after libcurand.so.10 is looked for where
# the bundle needs it.
# Usage: VAE_COMMIT=<sha> bash tools/gpu-check.sh BUNDLE_DIR   (BUNDLE_DIR from tools/gpu-bundle.sh)
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tools/gpu-check.sh BUNDLE_DIR}
if [[ -f "$build/bundle.tar.gz" ]]; then  # tools/gpu-bundle.sh packs the bundle to fit the carry limit
  unpacked=$(mktemp -d)
  tar -xzf "$build/bundle.tar.gz" -C "$unpacked" || { echo "gpu-check: cannot unpack $build/bundle.tar.gz" >&2; exit 1; }
  build=$unpacked
fi
out=${OUT:-/tmp/gpu-check}
budget=${VAE_CHECK_BUDGET:-480}
logs=$(mktemp -d)
mkdir -p "$out"
gpu_tests=("$build"/tests/test_*_gpu)
sanitizer=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
declare -A status

# test_philox links libcurand dynamically where the build machine's toolkit has no static archive
# (tests/CMakeLists.txt). Find libcurand.so.10 as benchmarks/gpu_report.sh finds cuBLAS: in the
# toolkit, else in PyTorch's nvidia-* wheels, and put its folder on the library path.
if ldd "$build"/tests/* 2>/dev/null | grep "libcurand.so.10 => not found" >/dev/null; then  # no -q: pipefail
  dir=$( (find /usr/local/cuda*/ -name libcurand.so.10 2>/dev/null;
          python3 -c 'import site; print("\n".join(site.getsitepackages()))' 2>/dev/null |
            xargs -I{} find {} -name libcurand.so.10 2>/dev/null) | head -1 | xargs -r dirname)
  [[ -n "$dir" ]] && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

step() {  # step NAME TIMEOUT_S COMMAND...: runs within what is left of the budget, logs, records the exit code
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS))
  if ((left < 10)); then
    echo "== $name: skipped, budget spent" | tee -a "$out/summary.txt"
    echo "   exit 124" >>"$out/summary.txt"
    return
  fi
  ((limit > left)) && limit=$left
  echo "== $name: $*" | tee -a "$out/summary.txt"
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  status[$name]=$?
  echo "   exit ${status[$name]}" | tee -a "$out/summary.txt"
}

step device 30 bash -c "nvidia-smi; nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv"
# Every binary this script runs must find its shared libraries here; one that cannot would only show
# later as an unexplained exit 127. The log names the binary and the library. (vae_bench is
# benchmarks/gpu_report.sh's, which finds cuBLAS and cuDNN itself.)
libs_check='echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"; for bin; do ldd "$bin" | sed "s|^|${bin##*/}:|"; done'
libs_check+=' | awk "{print} /not found/ {bad = 1} END {exit bad}"'
step libraries 30 bash -c "$libs_check" _ "$build/vae_cuda" "$build"/tests/* "$build"/benchmarks/bench_{gpu_epoch,evaluate}

# The gpu tests, full shape lists.
for bin in "${gpu_tests[@]}"; do
  name=$(basename "$bin")
  step "$name" 180 "$bin" --gtest_output="json:$logs/$name.json"
done

# A real training run on the GPU (the bundle's Fashion-MNIST subset), then the epoch benchmark.
step train-10-epochs 120 "$build/vae_cuda" --train "$build/data" --epochs 10 --device cuda --no-progress \
  --out "$logs/train"
step bench_gpu_epoch 120 "$build/benchmarks/bench_gpu_epoch" --json "$out/bench_gpu_epoch.json"
# That run's checkpoint evaluated on the GPU with the paper's K = 5000 over the 10000 test images
# (test_evaluation_gpu compares the GPU's figures with the CPU reference's).
step evaluate-gpu-k5000 120 "$build/vae_cuda" --evaluate "$logs/train/checkpoint.safetensors" --data-dir "$build/data" \
  --importance-samples 5000 --device cuda --no-progress --json "$out/evaluate_gpu_k5000.json" --out "$logs/traversal.png"
step bench_evaluate 120 "$build/benchmarks/bench_evaluate" --data "$build/data" --json "$out/bench_evaluate.json"

# compute-sanitizer: every tool on every gpu test, shapes cut to the tails (it runs 10-100x slower).
# A test binary that never reads VAE_GPU_TEST_QUICK runs its full size under every tool; the report
# names such binaries (ignores_quick_mode), so a timeout there points at the test, not the kernels.
for bin in "${gpu_tests[@]}"; do
  grep -q VAE_GPU_TEST_QUICK "$bin" || echo "note: $(basename "$bin") ignores VAE_GPU_TEST_QUICK" | tee -a "$logs/quick_mode.txt"
done
for tool in memcheck racecheck initcheck synccheck; do
  for bin in "${gpu_tests[@]}"; do
    step "sanitizer-$tool-$(basename "$bin")" 120 env VAE_GPU_TEST_QUICK=1 \
      "$sanitizer" --tool "$tool" --error-exitcode 99 "$bin"
  done
done

# The CPU suites last: the device machine is a second, different CPU for them.
for bin in "$build"/tests/test_{philox,adam,gradients,model,gemm_plan}; do
  step "$(basename "$bin")" 60 "$bin"
done

python3 - "$out" "$logs" <<'PY'
import glob, json, os, subprocess, sys
out, logs = sys.argv[1], sys.argv[2]
quick_notes = os.path.join(logs, "quick_mode.txt")
ignores_quick = [line.split()[1] for line in open(quick_notes)] if os.path.exists(quick_notes) else []
summary = open(os.path.join(out, "summary.txt")).read().split("== ")[1:]
steps = {}
for block in summary:
    head, _, tail = block.partition("\n")
    steps[head.split(":")[0]] = int(tail.strip().split()[-1])
def query(field):
    try:
        return subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return None
# A gpu test that skipped did not run: count them, so "passed" cannot mean "never saw the GPU".
gtest = {}
for path in sorted(glob.glob(os.path.join(logs, "test_*_gpu.json"))):
    cases = [case for suite in json.load(open(path))["testsuites"] for case in suite["testsuite"]]
    gtest[os.path.basename(path)[:-5]] = {
        "tests": len(cases),
        "failed": sum(1 for c in cases if c.get("failures")),
        "skipped": sum(1 for c in cases if c.get("result") == "SKIPPED")}
all_ran = bool(gtest) and all(g["skipped"] == 0 and g["failed"] == 0 for g in gtest.values())
report = {"device": query("name"), "driver": query("driver_version"), "commit": os.environ.get("VAE_COMMIT"),
          "steps": steps, "gpu_tests": gtest,
          # exit 124: cut short by its time limit or the budget, not a test that failed
          "timed_out": sorted(name for name, code in steps.items() if code == 124),
          "ignores_quick_mode": ignores_quick,
          "all_passed": all_ran and all(code == 0 for code in steps.values())}
json.dump(report, open(os.path.join(out, "report.json"), "w"), indent=1)
print(json.dumps(report, indent=1))
PY
tar -czf "$out/logs.tar.gz" -C "$logs" .
