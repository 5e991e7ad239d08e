#!/usr/bin/env bash
# The one prepared GPU check (issue: CUDA path). On a machine with a GPU and no registry:
#   1. install any missing runtime wheel from .gl/whl (brought along; `--prepare` fills it
#      with them, the nlohmann/json headers and a few real frames);
#   2. build the library, extension and C++ tests with CUDA against this machine's torch;
#   3. run the C++ test suite (ctest), CUDA cases included;
#   4. run scripts/gpu_check.py: exports artifacts from checkpoints with this torch, then
#      accuracy vs CPU fp32, allocations, threads, a second engine while serving, a forced
#      capture failure, latency vs eager and torch.compile.
# Results: OUT/gpu_check.json, OUT/gpu_check.md, OUT/build.log, OUT/ctest.log.
#
#   scripts/gpu_check.sh --prepare          # here: wheels + data the GPU machine lacks
#   scripts/gpu_check.sh --dry-run OUT      # here: every step on the CPU, small sizes
#   scripts/gpu_check.sh OUT                # there: the real check (under 8 min on an H200)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAGE=.gl  # ignored by git; the device tool carries it
log() { echo "[gpu_check $(date +%T)] $*"; }

if [ "${1:-}" = "--prepare" ]; then
  # Wheels of the runtime dependencies (pure Python, any platform) and a few real frames.
  mkdir -p "$STAGE/whl" "$STAGE/data/camvid/images/val" "$STAGE/data/cityscapes_sample" "$STAGE/include"
  cp -r /usr/include/nlohmann "$STAGE/include/"  # header-only; the GPU machine may lack it
  "$PY" -m pip download -q --no-deps --only-binary=:all: -d "$STAGE/whl" "tqdm>=4.60"
  DATA=${IFA_RT_DATA:-../shared/data}
  ls "$DATA"/camvid/images/val/*.jpg | head -4 | xargs -I{} cp {} "$STAGE/data/camvid/images/val/"
  cp "$DATA/cityscapes_sample/demo_frankfurt_1024x512.png" "$STAGE/data/cityscapes_sample/"
  du -sh "$STAGE"
  exit 0
fi
DRY=""
if [ "${1:-}" = "--dry-run" ]; then DRY=--dry-run; shift; fi
OUT=${1:?usage: scripts/gpu_check.sh [--dry-run] OUT_DIR | --prepare}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DATA=${IFA_RT_DATA:-$STAGE/data}
[ -d "$DATA/camvid" ] || DATA=../shared/data
START=$(date +%s)

log "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())')"
# module:distribution (the import name of Pillow is PIL, which pip does not know).
for pair in tqdm:tqdm numpy:numpy PIL:pillow; do
  module=${pair%%:*} dist=${pair##*:}
  if ! "$PY" -c "import $module" 2>/dev/null; then
    log "installing $dist from $STAGE/whl"
    "$PY" -m pip install -q --no-index --find-links "$STAGE/whl" "$dist" || true
  fi
done

status=0
if [ -z "$DRY" ]; then
  log "building with CUDA against the installed torch (log: $OUT/build.log)"
  # nlohmann/json from the system if it has it, else the copy --prepare staged.
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DIFA_RT_JSON_INCLUDE=$(pwd)/$STAGE/include"
  if ! IFA_RT_CUDA=ON IFA_RT_BUILD_TESTS=ON CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
      "$PY" -m pip install --no-build-isolation --no-deps --no-index -e . >"$OUT/build.log" 2>&1; then
    tail -30 "$OUT/build.log"
    log "build FAILED"
    exit 1
  fi
  BUILD=build/$("$PY" -c 'import sys; print(sys.implementation.cache_tag)')
  log "ctest (log: $OUT/ctest.log)"
  ctest --test-dir "$BUILD" -j 4 --output-on-failure >"$OUT/ctest.log" 2>&1 || status=1
  tail -3 "$OUT/ctest.log"
else
  log "dry run: the installed build, no CUDA build or ctest"
fi

log "scripts/gpu_check.py $DRY"
"$PY" scripts/gpu_check.py --out "$OUT" --data "$DATA" $DRY ${GPU_CHECK_ARGS:-} || status=1
log "done in $(( $(date +%s) - START )) s (status $status); report: $OUT/gpu_check.md"
exit $status
