#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer, clang) of the artifact loader, for a bounded time.
#
#   fuzz_metadata  nlohmann/json + cpp/src/metadata.cpp: the ifa_rt.json parser and validator (no
#                  torch; fully instrumented, ~10^4 execs/s)
#   fuzz_artifact  cpp/src/artifact.cpp: whole .ifa.pt files through load_artifact (LibTorch is
#                  not instrumented: coverage sees our code only; crashes anywhere still count)
#
# fuzz_metadata runs under ASan + UBSan, fuzz_artifact under UBSan (see its build line). First
# every file in fuzz/regressions/ is replayed (a fixed crash
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
$CXX "${COMMON[@]}" $SAN fuzz/fuzz_metadata.cpp cpp/src/metadata.cpp \
  cpp/src/version.cpp -o "$OUT/fuzz_metadata"
# No ASan here: its operator new aborts on a huge request instead of throwing std::bad_alloc,
# and a corrupt length field makes LibTorch's unpickler ask for tens of GB
# (fuzz/regressions/artifact-huge-record.pt), which a normal process turns into a clean error.
# ASan would check only our thin loader anyway: LibTorch is not instrumented.
$CXX "${COMMON[@]}" -fsanitize=fuzzer,undefined -fno-sanitize-recover=undefined \
  -isystem "$TORCH_DIR/include" \
  -isystem "$TORCH_DIR/include/torch/csrc/api/include" \
  fuzz/fuzz_artifact.cpp cpp/src/artifact.cpp cpp/src/metadata.cpp \
  cpp/src/version.cpp -o "$OUT/fuzz_artifact" \
  -L"$TORCH_DIR/lib" -Wl,-rpath,"$TORCH_DIR/lib" -ltorch -ltorch_cpu -lc10

"$PY" fuzz/make_corpus.py "$OUT/seeds"

# LibTorch keeps process-lifetime allocations (registries, caches): leaks are not findings.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:protect_shadow_gap=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

echo "== replaying fuzz/regressions"
shopt -s nullglob
regressions=(fuzz/regressions/metadata-* )
artifact_regressions=(fuzz/regressions/artifact-* )
# A crash makes the binary exit non-zero, and set -e stops the run here.
if ((${#regressions[@]})); then "$OUT/fuzz_metadata" "${regressions[@]}" >"$OUT/replay.log" 2>&1; fi
if ((${#artifact_regressions[@]})); then "$OUT/fuzz_artifact" "${artifact_regressions[@]}" >>"$OUT/replay.log" 2>&1; fi
echo "replayed $((${#regressions[@]} + ${#artifact_regressions[@]})) regression inputs: no crash"

run() {  # name seconds corpus seeds max_len [extra flags]; 0 seconds skips (0 = forever)
  local name=$1 secs=$2 corpus=$3 seeds=$4 max_len=$5 log="$OUT/$1.log" rc=0
  shift 5
  if [ "$secs" -le 0 ]; then echo "== $name: skipped (0 s)"; return 0; fi
  echo "== fuzzing $name for ${secs} s"
  "$OUT/$name" -max_total_time="$secs" -timeout=20 -rss_limit_mb=8192 -max_len="$max_len" \
    -dict="$OUT/seeds/json.dict" -artifact_prefix="$OUT/findings/$name-" -print_final_stats=1 \
    "$@" "$corpus" "$seeds" >"$log" 2>&1 || rc=$?
  local runs execs_s cov findings
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  execs_s=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # Fork mode prints no stat:: lines: its progress lines read "#<runs>: cov: <n> ... exec/s: <n>".
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9]*\): .*/\1/p' "$log" | tail -1)
  [ -n "$execs_s" ] || execs_s=$(grep -o 'exec/s:\? [0-9]*' "$log" | tail -1 | awk '{print $2}')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  # Crashes, leaks and timeouts; slow-unit-* files are only the slowest inputs seen.
  findings=$(find "$OUT/findings" -name "$name-*" ! -name "$name-oom-*" ! -name "$name-slow-unit-*" | wc -l)
  echo "$name: out-of-memory inputs (LibTorch's unpickler; docs/reliability.md): $(find "$OUT/findings" -name "$name-oom-*" | wc -l)"
  echo "$name: ${runs:-?} executions (${execs_s:-?}/s), coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) files, findings ${findings} (exit $rc)"
  printf '{"target": "%s", "seconds": %s, "executions": %s, "execs_per_second": %s, "coverage_edges": %s, "corpus_files": %s, "findings": %s, "out_of_memory": %s, "exit": %s}\n' \
    "$name" "$secs" "${runs:-0}" "${execs_s:-0}" "${cov:-0}" "$(ls "$corpus" | wc -l)" "$findings" \
    "$(find "$OUT/findings" -name "$name-oom-*" | wc -l)" "$rc" >"$OUT/$name.json"
  return "$rc"
}
status=0
run fuzz_metadata "$META_S" "$OUT/corpus_metadata" "$OUT/seeds/metadata" 65536 || status=1
# Fork mode with -ignore_ooms: a corrupt archive can make LibTorch's unpickler use > 8 GB
# before it fails cleanly (docs/reliability.md); such inputs are kept and counted, not fatal.
run fuzz_artifact "$ART_S" "$OUT/corpus_artifact" "$OUT/seeds/artifact" 262144 \
  -fork=1 -ignore_ooms=1 || status=1
exit $status
