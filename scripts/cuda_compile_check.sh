#!/usr/bin/env bash
# Compile the CUDA engine where no GPU exists, so CUDA code cannot rot unseen
# (shared/CUDA_BUILD.md): a CUDA build of the pinned torch goes into its own venv, the
# library + extension + C++ tests are built against it with IFA_RT_CUDA=ON, and a smoke
# check imports the extension and expects the engine's clear "no CUDA device" error.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CUDA_VENV:-.venv-cuda}
BUILD=${CUDA_BUILD_DIR:-build/cuda}
export CUDA_PATH=${CUDA_PATH:-/usr/local/cuda-13.0}
# Where `make test` collects outcomes: a skip is recorded with its reason, never as a pass.
outcome() {
  if [ -n "${IFA_RT_TEST_REPORT:-}" ]; then echo "$2" >"$IFA_RT_TEST_REPORT/cuda-check.$1"; fi
}
skip() {
  echo "cuda_compile_check: SKIPPED: $1" >&2
  outcome skipped "$1"
  exit 0
}
[ -z "${IFA_RT_SKIP_CUDA_CHECK:-}" ] || skip "IFA_RT_SKIP_CUDA_CHECK is set"
command -v nvcc >/dev/null && [ ! -x "$CUDA_PATH/bin/nvcc" ] && CUDA_PATH=$(dirname "$(dirname "$(command -v nvcc)")")
[ -x "$CUDA_PATH/bin/nvcc" ] || skip "no nvcc at $CUDA_PATH or on PATH (set CUDA_PATH): the CUDA engine was not compiled"
export PATH="$CUDA_PATH/bin:$PATH"
if [ ! -f "$VENV/.ready" ]; then
  python3 -m venv "$VENV"
  # The machine's pip config points at a local CPU wheel; bypass it to get the CUDA build.
  env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null "$VENV/bin/pip" install -q \
    torch==2.13.0 "pybind11>=2.12" numpy
  touch "$VENV/.ready"
fi
PY="$(cd "$VENV" && pwd)/bin/python"
"$PY" -c 'import torch; assert torch.version.cuda, "expected a CUDA build of torch"; print("torch", torch.__version__, "cuda", torch.version.cuda)'
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DIFA_RT_CUDA=ON \
  -DIFA_RT_BUILD_TESTS=ON -DPython_EXECUTABLE="$PY" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >"$BUILD.configure.log" 2>&1 \
  || { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"
# The extension built against CUDA torch loads and reports the CUDA engine; with no device
# a CUDA Segmenter must fail with a clear error instead of crashing.
PYTHONPATH="$BUILD/cpp" "$PY" - "$BUILD/cpp/fixtures/tiny.ifa.pt" <<'PYEOF'
import sys
import torch
import _core
assert _core.has_cuda_engine(), "the CUDA engine was not compiled in"
print("CUDA engine compiled in; torch sees", torch.cuda.device_count(), "CUDA devices")
if torch.cuda.device_count() == 0:
    options = _core.Options.from_map({"device": "cuda:0"})
    try:
        _core.Segmenter(sys.argv[1], options)
    except RuntimeError as exc:
        assert "no CUDA device" in str(exc), exc
        print("without a GPU the CUDA engine refuses cleanly:", exc)
    else:
        raise AssertionError("a CUDA engine was built without a GPU")
PYEOF
# The CPU engine and its tests, built against the CUDA torch, must pass as well.
ctest --test-dir "$BUILD" --output-on-failure
outcome passed "compiled with $("$CUDA_PATH/bin/nvcc" --version | tail -1)"
echo "cuda_compile_check: OK"
