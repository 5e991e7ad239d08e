#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, clang) of the artifact loader, for a bounded time.
#
#   fuzz_metadata  cpp/src/json.cpp + metadata.cpp: the ifa_rt.json parser and validator (no
#                  torch; fully instrumented, ~10^4 execs/s)
#   fuzz_artifact  cpp/src/artifact.cpp: whole .ifa.pt files through load_artifact (LibTorch is
#                  not instrumented: coverage sees our code only; crashes anywhere still count)
#
# Both run under ASan + UBSan. First every file in fuzz/regressions/ is replayed (a fixed crash
# must stay fixed), then each target fuzzes for its time budget from the seeds of
# fuzz/make_corpus.py. Crashing inputs land in build/fuzz/findings/; turn each into a file in
# fuzz/regressions/ and a test (cpp/tests/test_bad_artifacts.cpp) once fixed.
#
# Usage: fuzz/run_fuzz.sh [metadata_seconds=300] [artifact_seconds=120]   (0: replay only)
# Needs: clang-14 and libclang-rt-14-dev (Debian), the project venv with torch.
set -euo pipefail
cd "$(dirname "$0")/.."
META_S=${1:-300}
ART_S=${2:-120}
PY=$(realpath -s "${PYTHON:-.venv/bin/python}")
CXX=${FUZZ_CXX:-clang++-14}
OUT=build/fuzz
mkdir -p "$OUT/findings" "$OUT/corpus_metadata" "$OUT/corpus_artifact"
command -v "$CXX" >/dev/null || { echo "run_fuzz: $CXX not found (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
TORCH_DIR=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)')
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
COMMON=(-std=c++17 -g -O1 -Icpp/include -Icpp/src
        "-DIFA_RT_VERSION=\"$VERSION\"" "-DIFA_RT_TORCH_VERSION=\"$TORCH_VERSION\"")

echo "== building (clang: $($CXX --version | head -1))"
$CXX "${COMMON[@]}" $SAN fuzz/fuzz_metadata.cpp cpp/src/json.cpp cpp/src/metadata.cpp \
  cpp/src/version.cpp -o "$OUT/fuzz_metadata"
$CXX "${COMMON[@]}" $SAN -isystem "$TORCH_DIR/include" \
  -isystem "$TORCH_DIR/include/torch/csrc/api/include" \
  fuzz/fuzz_artifact.cpp cpp/src/artifact.cpp cpp/src/json.cpp cpp/src/metadata.cpp \
  cpp/src/version.cpp -o "$OUT/fuzz_artifact" \
  -L"$TORCH_DIR/lib" -Wl,-rpath,"$TORCH_DIR/lib" -ltorch -ltorch_cpu -lc10

"$PY" fuzz/make_corpus.py "$OUT/seeds"

# LibTorch keeps process-lifetime allocations (registries, caches): leaks are not findings.
# A corrupt length field makes the unpickler ask for tens of GB: in a normal process that is
# a std::bad_alloc (turned into ifa_rt::Error), so let ASan fail such allocations the same way
# (return null -> bad_alloc) instead of aborting, and keep libFuzzer's malloc limit above it.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:protect_shadow_gap=0:allocator_may_return_null=1:max_allocation_size_mb=8192"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

echo "== replaying fuzz/regressions"
shopt -s nullglob
regressions=(fuzz/regressions/metadata-* )
artifact_regressions=(fuzz/regressions/artifact-* )
# A crash makes the binary exit non-zero, and set -e stops the run here.
if ((${#regressions[@]})); then "$OUT/fuzz_metadata" "${regressions[@]}" >"$OUT/replay.log" 2>&1; fi
if ((${#artifact_regressions[@]})); then "$OUT/fuzz_artifact" "${artifact_regressions[@]}" >>"$OUT/replay.log" 2>&1; fi
echo "replayed $((${#regressions[@]} + ${#artifact_regressions[@]})) regression inputs: no crash"

run() {  # name seconds corpus seeds max_len; 0 seconds skips (libFuzzer would run forever)
  local name=$1 secs=$2 corpus=$3 seeds=$4 max_len=$5 log="$OUT/$1.log" rc=0
  if [ "$secs" -le 0 ]; then echo "== $name: skipped (0 s)"; return 0; fi
  echo "== fuzzing $name for ${secs} s"
  "$OUT/$name" -max_total_time="$secs" -timeout=20 -rss_limit_mb=8192 -malloc_limit_mb=16384 -max_len="$max_len" \
    -dict="$OUT/seeds/json.dict" -artifact_prefix="$OUT/findings/$name-" -print_final_stats=1 \
    "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  local runs execs_s cov findings
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs_s=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  findings=$(find "$OUT/findings" -name "$name-*" | wc -l)
  echo "$name: ${runs:-?} executions (${execs_s:-?}/s), coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) files, findings ${findings} (exit $rc)"
  printf '{"target": "%s", "seconds": %s, "executions": %s, "execs_per_second": %s, "coverage_edges": %s, "corpus_files": %s, "findings": %s, "exit": %s}\n' \
    "$name" "$secs" "${runs:-0}" "${execs_s:-0}" "${cov:-0}" "$(ls "$corpus" | wc -l)" "$findings" "$rc" >"$OUT/$name.json"
  return "$rc"
}
status=0
run fuzz_metadata "$META_S" "$OUT/corpus_metadata" "$OUT/seeds/metadata" 65536 || status=1
run fuzz_artifact "$ART_S" "$OUT/corpus_artifact" "$OUT/seeds/artifact" 262144 || status=1
exit $status
