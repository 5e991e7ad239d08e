"""Reduced precision: what this CPU runs natively, and whether a precision passed its gate.

precision="int8" on a TorchScript artifact compiles its int8 calibration (`name.int8.pt`
beside it; `ifa_rt.deploy.calibration`) for this machine on first use, cached. bf16 and fp16
need no calibration, only a passed gate: `ifa_rt.deploy.precision_gate.gate_precision`
measures one through the C++ runtime and writes `name.bf16.json` / `name.fp16.json` beside the
artifact (`ifa-rt quantize --precision bf16`). A bundled model's folder is part of the
installed package, so its new gates go to the user cache instead (`gate_output`); its shipped
gates stay in the bundle and are read when the cache has none (`gate_file`). Which precision
serves (precision="auto") is decided by `ifa_rt.runtime.prepare`.

Reads files only (`ifa_rt.side_files`): deploy's writers import this module, never the reverse.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import side_files
from ..bundled import is_bundled
from ..side_files import CALIBRATION_SUFFIX, beside, calibration_for, file_sha256, gate_suffix

__all__ = [
    "GATE_VERSION",
    "VNNI_FLAGS",
    "cpu_has_native_bf16",
    "cpu_has_vnni",
    "gate_cache_dir",
    "gate_file",
    "gate_output",
    "gate_passed",
    "int8_calibration",
]

GATE_VERSION = 1
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
# Emulated bf16 is slower than fp32; native bf16 measured 1.8-2.0x faster with AVX512_BF16
# alone (docs/benchmarks.md) and faster again with AMX.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_vnni(flags: set[str] | None = None) -> bool:
    """True when this CPU (or the given /proc/cpuinfo flags) has int8 dot-product instructions."""
    return any(f in (side_files.cpu_flags() if flags is None else flags) for f in VNNI_FLAGS)


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    """True when this CPU (or the given flags) computes bf16 natively (AVX512_BF16 or AMX)."""
    return any(f in (side_files.cpu_flags() if flags is None else flags) for f in NATIVE_BF16_FLAGS)


def int8_calibration(path: Path, where: str, runtime: str | None) -> Path:
    """The int8 calibration beside a TorchScript artifact, or ValueError saying why int8
    cannot run (`Segmenter` then compiles it: `ifa_rt.deploy.calibration.compile_int8`)."""
    if runtime not in (None, "auto", "aoti"):
        raise ValueError(
            f"{where}: 'runtime': expected 'auto' or 'aoti' for precision 'int8' (an "
            f"AOTInductor package), got '{runtime}'"
        )
    calibration = calibration_for(path)
    if calibration is None:
        raise ValueError(
            f"{where}: 'precision': 'int8' needs the artifact's int8 calibration "
            f"({path.name.removesuffix('.ifa.pt')}{CALIBRATION_SUFFIX} beside it), got none; "
            "write one with `ifa-rt quantize --save-calibration`"
        )
    return calibration


def gate_cache_dir() -> Path:
    """Where gates of bundled models are written: `gates/` in the compiled-package cache."""
    return side_files.cache_dir() / "gates"


def gate_output(artifact: Path, precision: str) -> Path:
    """Where a new gate of `precision` for `artifact` is written: `name.<precision>.json`
    beside it, or for a bundled model (whose folder may be a read-only site-packages) in
    `gate_cache_dir()`, named by the artifact's bytes so an upgraded bundle starts afresh."""
    if not is_bundled(artifact):
        return beside(artifact, gate_suffix(precision))
    stem = Path(artifact).name.removesuffix(".pt").removesuffix(".ifa")
    digest = file_sha256(artifact)[:16]
    return gate_cache_dir() / f"{stem}-{digest}{gate_suffix(precision)}"


def gate_file(artifact: Path, precision: str) -> Path:
    """Where the gate of `precision` for `artifact` is read: `gate_output`'s file when it
    exists, else `name.<precision>.json` beside the artifact (a bundled model's shipped gate)."""
    written = gate_output(artifact, precision)
    return written if written.is_file() else beside(artifact, gate_suffix(precision))


def gate_passed(artifact: Path, precision: str) -> bool:
    """True when `precision` has a passed gate written for exactly this artifact."""
    path = gate_file(artifact, precision)
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    return (
        record.get("format_version") == GATE_VERSION
        and record.get("artifact_sha256") == file_sha256(artifact)
        and bool(record.get("gate", {}).get("passed"))
    )
