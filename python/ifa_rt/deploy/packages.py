"""Compiling the package `ifa_rt.runtime.prepare` asks for into the cache (`ifa-rt prepare`)."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from ..runtime.prepare import package_path, plan_args
from ..side_files import calibration_for
from .aoti import compile_artifact
from .calibration import compile_int8

__all__ = ["prepare_package"]


def prepare_package(
    path: Path, settings: dict[str, Any], precision: str, show_progress: bool = True
) -> Path:
    """Compile the package of `path` into the cache (once per machine: concurrent processes
    wait on a lock and find it) and return its path."""
    target = package_path(path, settings, precision)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        args = dict(plan_args(settings), show_progress=show_progress)
        if precision == "int8":
            return compile_int8(path, calibration_for(path), **args)
        return compile_artifact(path, precision=precision, **args)
