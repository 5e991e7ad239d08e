#!/usr/bin/env bash
# Configure, build and run examples/cpp_app against the installed ifa_rt package
# (find_package(ifa_rt) from <site-packages>/ifa_rt/share/cmake/ifa_rt).
#
#   scripts/build_cpp_example.sh [MODEL.ifa.pt] [IMAGE]
# MODEL defaults to the bundled "camvid" model, else a tiny test artifact made with
# tests/fixtures/make_fixtures.py; IMAGE defaults to the first CamVid val image under
# $IFA_RT_DATA (default ../shared/data). Env: PYTHON (default .venv/bin/python if present),
# BUILD_DIR (default build/cpp_app).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}"
BUILD_DIR="${BUILD_DIR:-$ROOT/build/cpp_app}"
DATA="${IFA_RT_DATA:-$ROOT/../shared/data}"

# The compiled files live beside ifa_rt._core (also in an editable install).
IFA_RT_DIR="$("$PYTHON" -c 'import os, ifa_rt._core as c; print(os.path.join(os.path.dirname(c.__file__), "share", "cmake", "ifa_rt"))')"
GENERATOR=()
command -v ninja >/dev/null 2>&1 && GENERATOR=(-G Ninja)
cmake -S "$ROOT/examples/cpp_app" -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -Difa_rt_DIR="$IFA_RT_DIR"
cmake --build "$BUILD_DIR" -j "${CMAKE_BUILD_PARALLEL_LEVEL:-2}"

MODEL="${1:-}"
if [ -z "$MODEL" ]; then
  MODEL="$("$PYTHON" -c 'import ifa_rt.bundled as m; p = m.BUNDLED_DIR / "camvid.ifa.pt"; print(p if p.is_file() else "")')"
fi
if [ -z "$MODEL" ]; then
  echo "build_cpp_example: no bundled camvid model; using a tiny test artifact" >&2
  "$PYTHON" "$ROOT/tests/fixtures/make_fixtures.py" "$BUILD_DIR/fixtures" >/dev/null
  MODEL="$BUILD_DIR/fixtures/tiny.ifa.pt"
fi
IMAGE="${2:-$(ls "$DATA"/camvid/images/val/*.jpg 2>/dev/null | head -n 1 || true)}"
if [ -z "$IMAGE" ]; then
  echo "build_cpp_example: no image given and no CamVid val images under $DATA" >&2
  exit 1
fi
"$BUILD_DIR/cpp_app" "$MODEL" "$IMAGE"
