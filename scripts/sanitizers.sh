#!/usr/bin/env bash
# Build the C++ library, tools and ctest suite with AddressSanitizer + UndefinedBehaviorSanitizer
# in their own build tree (build/asan) and run ctest there (docs/reliability.md).
#
# LibTorch itself is not instrumented: ASan still intercepts every malloc/free it makes (so
# overflows of torch-allocated buffers in our code are caught), but its own internals are not
# checked. What the run needs, and why:
#   detect_leaks=1 + suppressions   LeakSanitizer on, with LibTorch's process-lifetime
#                                   registries and caches (allocated once, never freed)
#                                   suppressed by library name, so leaks in ifa_rt still fail
#   protect_shadow_gap=0            only needed for CUDA builds (the driver maps memory in
#                                   the shadow gap); harmless here, so always set
#   halt_on_error=1, UBSan -fno-sanitize-recover   the first finding fails the test
# The test executables are instrumented, so libasan is loaded first without LD_PRELOAD; only
# an uninstrumented host (python loading the instrumented library) would need
# LD_PRELOAD=$(g++ -print-file-name=libasan.so).
#
# Usage: scripts/sanitizers.sh [ctest args...]   (env: PYTHON, ASAN_BUILD_DIR, JOBS)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(realpath -s "${PYTHON:-.venv/bin/python}")  # absolute, venv symlink kept
BUILD=${ASAN_BUILD_DIR:-build/asan}
JOBS=${JOBS:-${CMAKE_BUILD_PARALLEL_LEVEL:-2}}
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g -O1"

mkdir -p "$BUILD"
cmake -S . -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DIFA_RT_BUILD_TESTS=ON -DIFA_RT_BUILD_PYTHON=OFF -DIFA_RT_CUDA=OFF \
  -DPython_EXECUTABLE="$PY" >"$BUILD/configure.log" 2>&1 || { cat "$BUILD/configure.log"; exit 1; }
cmake --build "$BUILD" -j "$JOBS"

SUPP="$BUILD/lsan.supp"
cat >"$SUPP" <<'SUPP'
# LibTorch/oneDNN/OpenMP keep process-lifetime state (operator registries, JIT caches,
# thread pools) that is never freed: not ours to fix.
leak:libtorch_cpu.so
leak:libtorch.so
leak:libc10.so
leak:libgomp
leak:libdnnl
SUPP
export ASAN_OPTIONS="detect_leaks=1:protect_shadow_gap=0:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_init_order=1:check_initialization_order=1"
export LSAN_OPTIONS="suppressions=$(pwd)/$SUPP:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir "$BUILD" --output-on-failure --timeout 600 "$@"
