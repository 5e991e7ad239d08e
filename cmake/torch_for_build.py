"""Which torch the build compiles against, run by CMakeLists.txt with the build's Python.

Prints `<torch cmake prefix>;<torch version>` and exits 0, or prints one line saying how to
build and exits 2. The extension must be compiled against the torch it will run with, so a
build frontend's isolated environment (`pip install PATH` without `--no-build-isolation`,
`python -m build`, `uv build`) is refused: torch is deliberately not a build requirement, and
were one installed there anyway it would be another torch than the user's.
"""

from __future__ import annotations

import os
import sys

INSTRUCTION = (
    "ifa_rt must be built against the torch it runs with: "
    "pip install scikit-build-core pybind11 && pip install --no-build-isolation <path>"
)

# Folder names of the temporary environments build frontends install build requirements in:
# pip (`pip-build-env-*`, on PYTHONPATH), pypa/build (a venv `build-env-*`), uv (`builds-v0`).
_ISOLATED_MARKERS = ("pip-build-env-", "build-env-", "builds-v0")


def isolated_env_folder(paths: list[str]) -> str | None:
    """The first of `paths` inside a build frontend's isolated environment, else None."""
    for path in paths:
        parts = os.path.normpath(path).split(os.sep)
        if any(part.startswith(_ISOLATED_MARKERS) for part in parts):
            return path
    return None


def main() -> int:
    """Print torch's CMake prefix and version, or the build instruction on stderr (exit 2)."""
    isolated = isolated_env_folder(
        [sys.prefix, *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    )
    try:
        import torch
        import torch.utils
    except ImportError:
        if isolated:
            print(INSTRUCTION, file=sys.stderr)
        else:
            print(
                f"{INSTRUCTION} (no torch in {sys.executable}: pip install torch==2.13.0 first)",
                file=sys.stderr,
            )
        return 2
    found_in = isolated_env_folder([os.path.dirname(torch.__file__)])
    if isolated or found_in:
        print(
            f"{INSTRUCTION} (this build would use torch {torch.__version__} from an isolated "
            f"build environment: {found_in or isolated})",
            file=sys.stderr,
        )
        return 2
    print(f"{torch.utils.cmake_prefix_path};{torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
