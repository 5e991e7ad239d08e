#!/usr/bin/env bash
# The one prepared GPU check of the CUDA path. It is sized for ~6 minutes on an H100 and
# always returns its numbers:
#   0. preflight (seconds): the carried .gl/ folder holds the nlohmann/json headers, the
#      wheels and the frames; else it exits 2 at once, saying what is missing;
#   1. build the library, extension and C++ tests with CUDA against this machine's torch;
#   2. scripts/gpu_check.py: export -> Segmenter latency fp16/bf16 -> accuracy -> capture
#      failure -> device memory -> threads -> overlap -> eager -> fuser off/auto -> AOTI on
#      CUDA -> torch.compile, each step appended to OUT/gpu_check.jsonl as it ends; steps
#      that the global deadline
#      (GPU_CHECK_DEADLINE_S, default 480 s from this script's start) no longer leaves time
#      for are recorded as skipped;
#   3. ctest (CUDA cases included) with whatever time is left.
# OUT holds at most 4 small files: gpu_check.jsonl, gpu_check.md, build.log and ctest.log
# (their last lines); artifacts, fixtures and packages go to a temp dir.
#
#   scripts/gpu_check.sh --prepare          # here: fill .gl/ (headers, wheels, frames)
#   scripts/gpu_check.sh --dry-run OUT      # here: every step on the CPU, small sizes
#   scripts/gpu_check.sh OUT                # there, with .gl carried (README: GPU check)
#
# Environment: PYTHON (python3), GPU_CHECK_STAGE (.gl), GPU_CHECK_DEADLINE_S (480),
# GPU_CHECK_ONLY (step keys, e.g. accuracy,eager), GPU_CHECK_ARGS (more gpu_check.py flags),
# IFA_RT_DATA (the dry run's frames; the real run reads only $GPU_CHECK_STAGE/data).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
PY=${PYTHON:-python3}
STAGE=${GPU_CHECK_STAGE:-.gl}  # ignored by git; the device tool's `carry` brings it
DEADLINE_S=${GPU_CHECK_DEADLINE_S:-480}
CAMVID_FRAMES=3  # as scripts/gpu_check_common.py
DEMO=cityscapes_sample/demo_frankfurt_1024x512.png
log() { echo "[gpu_check $(date +%T)] $*"; }
elapsed() { echo $(($(date +%s) - START)); }
T=$START  # when the step being recorded began
row() { "$PY" scripts/gpu_check_report.py "$OUT" "$1" "$2" $(($(date +%s) - T)) "$3"; T=$(date +%s); }

if [ "${1:-}" = "--prepare" ]; then
  DATA=${IFA_RT_DATA:-../shared/data}  # here only: the GPU machine reads the staged copy
  rm -rf "$STAGE/data" "$STAGE/whl" "$STAGE/include"
  mkdir -p "$STAGE/whl" "$STAGE/data/camvid/images/val" "$STAGE/data/cityscapes_sample" \
    "$STAGE/include"
  cp -r /usr/include/nlohmann "$STAGE/include/"  # header-only; the GPU machine lacks it
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$STAGE/whl" "tqdm>=4.60"
  find "$DATA/camvid/images/val" -name '*.jpg' | sort | head -$CAMVID_FRAMES |
    xargs -I{} cp {} "$STAGE/data/camvid/images/val/"
  cp "$DATA/$DEMO" "$STAGE/data/cityscapes_sample/"
  du -sh "$STAGE"
  exit 0
fi
DRY=""
if [ "${1:-}" = "--dry-run" ]; then DRY=--dry-run; shift; fi
OUT=${1:?usage: scripts/gpu_check.sh [--dry-run] OUT_DIR | --prepare}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT/gpu_check.jsonl" "$OUT/gpu_check.md" "$OUT/build.log" "$OUT/ctest.log"
if [ -n "$DRY" ]; then DATA=${IFA_RT_DATA:-$STAGE/data}; else DATA=$STAGE/data; fi

# Preflight: what the run needs and cannot fetch there, checked before anything slow.
missing=()
if [ -z "$DRY" ]; then
  [ -f "$STAGE/include/nlohmann/json.hpp" ] || missing+=("$STAGE/include/nlohmann/json.hpp")
  compgen -G "$STAGE/whl/tqdm-*.whl" >/dev/null || missing+=("$STAGE/whl/tqdm-*.whl")
fi
frames=$(find "$DATA/camvid/images/val" -name '*.jpg' 2>/dev/null | wc -l)
[ "$frames" -ge $CAMVID_FRAMES ] || missing+=("$CAMVID_FRAMES frames in $DATA/camvid/images/val (found $frames)")
[ -f "$DATA/$DEMO" ] || missing+=("$DATA/$DEMO")
hint=""
[ ${#missing[@]} -eq 0 ] || hint=". Run scripts/gpu_check.sh --prepare here and carry .gl"
if [ -z "$DRY" ] && ! "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
  missing+=("a CUDA device visible to $PY's torch")
fi
if [ ${#missing[@]} -gt 0 ]; then
  msg="missing: ${missing[*]}$hint"
  log "preflight FAILED: $msg"
  row preflight failed "$msg"
  exit 2
fi
row preflight passed "${DRY:+dry run: }$frames CamVid frames and the demo frame under $DATA${DRY:-, headers and wheels under $STAGE}"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# Compiled packages and inductor's files stay out of OUT; no background compile competes.
export IFA_RT_CACHE=$WORK/cache IFA_RT_TIER_UP=0 PYTHONUNBUFFERED=1
export PYTHONPATH=$(pwd)/scripts${PYTHONPATH:+:$PYTHONPATH}
T=$(date +%s)
log "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())')"
for pair in tqdm:tqdm numpy:numpy PIL:pillow; do  # module:distribution
  module=${pair%%:*} dist=${pair##*:}
  if ! "$PY" -c "import $module" 2>/dev/null; then
    log "installing $dist from $STAGE/whl"
    "$PY" -m pip install -q --no-index --find-links "$STAGE/whl" "$dist" || true
  fi
done

status=0
if [ -z "$DRY" ]; then
  log "building with CUDA against the installed torch (log: $OUT/build.log)"
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DIFA_RT_JSON_INCLUDE=$(pwd)/$STAGE/include"
  if ! IFA_RT_CUDA=ON IFA_RT_BUILD_TESTS=ON CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      timeout "$DEADLINE_S" "$PY" -m pip install --no-build-isolation --no-deps --no-index -e . \
      >"$WORK/build.log" 2>&1; then
    tail -n 300 "$WORK/build.log" >"$OUT/build.log"
    tail -n 30 "$WORK/build.log"
    row build failed "the CUDA build failed; its last lines are in build.log"
    exit 1
  fi
  tail -n 300 "$WORK/build.log" >"$OUT/build.log"
  row build passed "library, extension and C++ tests built with CUDA"
else
  row build skipped "dry run: the installed build, no CUDA build"
fi

left=$((DEADLINE_S - $(elapsed)))
log "scripts/gpu_check.py $DRY (deadline in $left s)"
# shellcheck disable=SC2086  # GPU_CHECK_ARGS is a list of flags
"$PY" scripts/gpu_check.py --out "$OUT" --data "$DATA" --work "$WORK" --deadline-s "$left" \
  ${GPU_CHECK_ONLY:+--only "$GPU_CHECK_ONLY"} $DRY ${GPU_CHECK_ARGS:-} || status=1

left=$((DEADLINE_S - $(elapsed)))
T=$(date +%s)
if [ -n "$DRY" ]; then
  row ctest skipped "dry run: make test runs ctest"
elif [ "$left" -lt 30 ]; then
  row ctest skipped "deadline: $left s left, ctest needs ~30-60 s"
else
  BUILD=build/$("$PY" -c 'import sys; print(sys.implementation.cache_tag)')
  log "ctest (up to $left s; log: $OUT/ctest.log)"
  if timeout "$left" ctest --test-dir "$BUILD" -j 8 --output-on-failure >"$WORK/ctest.log" 2>&1; then
    row ctest passed "$(tail -n 3 "$WORK/ctest.log" | grep -m1 'tests passed' || echo passed)"
  else
    status=1
    row ctest failed "$(grep -m1 'tests passed' "$WORK/ctest.log" || echo "failed or timed out after $left s")"
  fi
  tail -n 300 "$WORK/ctest.log" >"$OUT/ctest.log"
fi
log "done in $(elapsed) s (status $status); record: $OUT/gpu_check.jsonl, $OUT/gpu_check.md"
exit $status
