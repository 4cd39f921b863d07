#!/usr/bin/env bash
# Fuzzes the two readers of untrusted files, IDX data and safetensors checkpoints, with libFuzzer
# under ASan and UBSan for SECONDS each (default 60). Builds from the reader sources alone (no CUDA)
# into build-fuzz/, seeds from tests/fuzz/make_seeds.cpp, and grows the corpus under build-fuzz/ so
# the committed tree never changes. Exits non-zero when either fuzzer finds a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
if [[ ! $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: tools/fuzz.sh [SECONDS]   (seconds per fuzzer, default 60)" >&2
  exit 2
fi

# libFuzzer ships in libclang-rt-14-dev, not with clang itself; the rest is what the readers link.
bash tools/install-packages.sh clang-14 libclang-rt-14-dev libfmt-dev zlib1g-dev nlohmann-json3-dev

out=build-fuzz
mkdir -p "$out/obj" "$out/artifacts"
# Two runs at once would rebuild the same objects under each other.
exec 9>"$out/lock"
flock -n 9 || { echo "fuzz: waiting for another tools/fuzz.sh to finish"; flock 9; }

cxx=clang++-14
common=(-std=c++20 -g -O1 -Iinclude -fsanitize=address,undefined -fno-sanitize-recover=undefined)
# The readers and harnesses carry libFuzzer's coverage hooks; only the fuzzer links add its main().
instrumented=("${common[@]}" -fsanitize=fuzzer-no-link)
headers=(include/vae/*.hpp host/*.hpp tests/fuzz/*.hpp tools/fuzz.sh)

# stale TARGET DEP...: true when TARGET is missing or older than any DEP.
stale() {
  local target=$1 dep
  shift
  [[ -e $target ]] || return 0
  for dep; do [[ $dep -nt $target ]] && return 0; done
  return 1
}

sources=(host/idx_reader.cpp host/checkpoint.cpp host/safetensors_header.cpp host/atomic_file.cpp host/config.cpp host/flag_values.cpp host/layout.cpp
         host/lr_scheduler.cpp
         tests/fuzz/fuzz_idx.cpp tests/fuzz/fuzz_checkpoint.cpp tests/fuzz/make_seeds.cpp)
pids=()
for src in "${sources[@]}"; do
  obj=$out/obj/$(basename "${src%.cpp}").o
  if stale "$obj" "$src" "${headers[@]}"; then
    echo "fuzz: compiling $src"
    "$cxx" "${instrumented[@]}" -c "$src" -o "$obj" &
    pids+=($!)
  fi
done
for pid in "${pids[@]}"; do wait "$pid"; done

readers_idx=("$out/obj/idx_reader.o")
readers_checkpoint=("$out/obj/checkpoint.o" "$out/obj/safetensors_header.o" "$out/obj/atomic_file.o" "$out/obj/config.o"
                    "$out/obj/flag_values.o" "$out/obj/layout.o" "$out/obj/lr_scheduler.o")
link() {  # link OUTPUT FLAG OBJECT...
  local output=$1 flag=$2
  shift 2
  if stale "$output" "$@"; then "$cxx" "${common[@]}" "$flag" "$@" -o "$output" -lfmt -lz; fi
}
link "$out/fuzz_idx" -fsanitize=fuzzer "$out/obj/fuzz_idx.o" "${readers_idx[@]}"
link "$out/fuzz_checkpoint" -fsanitize=fuzzer "$out/obj/fuzz_checkpoint.o" "${readers_checkpoint[@]}"
link "$out/make_seeds" -fsanitize=address,undefined "$out/obj/make_seeds.o" "${readers_checkpoint[@]}"

seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
"$out/make_seeds" "$seeds/idx" "$seeds/checkpoint"

# run_fuzzer NAME: fuzzes for $seconds, new inputs going to build-fuzz/corpus/NAME (kept across runs,
# so each run starts where the last one stopped), the seeds read alongside.
found=0
run_fuzzer() {
  local name=$1 work=$out/corpus/$1 log=$out/$1.log status=0
  mkdir -p "$work"
  echo "fuzz: $name for ${seconds}s (log: $log)"
  local start=$SECONDS
  # The IDX reader may legitimately decompress up to its 1 GiB cap, so the memory limit sits above
  # that; 1 MB inputs are plenty to reach every header and gzip path.
  "$out/fuzz_$name" "$work" "$seeds/$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
    -max_len=1048576 -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" >"$log" 2>&1 || status=$?
  local elapsed=$((SECONDS - start))
  local execs corpus
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  # libFuzzer's last status line says "corp: INPUTS/BYTES".
  corpus=$(grep -o 'corp: [0-9]*/[0-9A-Za-z]*' "$log" | tail -n 1 | cut -d' ' -f2)
  if ((status == 0)); then
    echo "fuzz: $name: ${execs:-?} executions in ${elapsed}s, corpus ${corpus%/*} inputs (${corpus#*/})," \
         "$(find "$work" -type f | wc -l) files in $work, no crash"
  else
    found=1
    local artifact
    artifact=$(sed -n 's/.*Test unit written to //p' "$log" | tail -n 1)
    echo "fuzz: $name: CRASH after ${elapsed}s (libFuzzer exit $status): ${artifact:-no artifact written}" \
         "(reproduce: $out/fuzz_$name ${artifact:-FILE})"
    grep -n -m 1 -A 60 -E 'ERROR: |runtime error|deadly signal|out-of-memory|timeout after' "$log" || tail -n 60 "$log"
  fi
}
run_fuzzer idx
run_fuzzer checkpoint
exit "$found"
