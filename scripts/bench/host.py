"""The machine a benchmark ran on: CPU, the ISA flags that decide which kernels run, load, versions.

A latency is only meaningful next to these facts: the same code is 1.5x apart between a CPU
with AMX and one without, and this VM is shared (the load average says whether it was busy).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["ISA_FLAGS", "host_info", "isa_flags", "loadavg", "versions"]

# /proc/cpuinfo flags that select kernels in oneDNN, ONNX Runtime and OpenVINO: vector width
# (avx2, avx512f), int8 dot products (VNNI), bf16/fp16 arithmetic and the AMX tile units.
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)

# The engines compared; a missing one is reported as None rather than failing the report.
_PACKAGES = ("numpy", "torch", "onnxruntime", "openvino", "ifa_rt")


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU model name and the first processor's flags, from /proc/cpuinfo."""
    model, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return model, flags


def isa_flags() -> list[str]:
    """The ISA_FLAGS this CPU has, in ISA_FLAGS order."""
    flags = _cpuinfo()[1]
    return [f for f in ISA_FLAGS if f in flags]


def loadavg() -> list[float] | None:
    """The 1/5/15-minute load averages (None where /proc/loadavg is missing)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def versions() -> dict[str, str | None]:
    """Python's and each compared engine's version (None: not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except ImportError:
            out[name] = None
    return out


def host_info() -> dict[str, Any]:
    """CPU model, cores (all and usable), ISA flags, AMX yes/no and library versions."""
    model, _ = _cpuinfo()
    isa = isa_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "isa": isa,
        "amx": any(f.startswith("amx") for f in isa),
        "versions": versions(),
    }
