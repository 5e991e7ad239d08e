"""The compiled extension `ifa_rt._core`, loaded only after checking it was built against the
torch that runs: a mismatch can fail to link, or worse, link and crash.

Only the runtime loads it (this module), so exporting, quantizing or training with a stale
build still works; `ifa_rt.Segmenter` then says how to rebuild.
"""

from __future__ import annotations

import importlib

import torch


def check_torch_matches(built_with: str, running: str) -> None:
    """Raise ImportError if the running torch is not the one the extension was built with."""
    if built_with != running:
        raise ImportError(
            f"ifa_rt: the compiled extension was built against torch {built_with}, "
            f"but torch {running} is installed. Rebuild it against the installed torch: "
            "pip install --no-build-isolation --force-reinstall --no-deps ."
        )


def _load():
    """`ifa_rt._core`, after the torch check (without a build, its ImportError says so)."""
    try:
        build_info = importlib.import_module("ifa_rt._build_info")
    except ImportError:
        build_info = None  # not built: importing _core below fails with the reason
    if build_info is not None:
        check_torch_matches(build_info.TORCH_VERSION, torch.__version__)
    return importlib.import_module("ifa_rt._core")


core = _load()
