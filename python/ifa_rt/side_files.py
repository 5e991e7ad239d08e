"""An artifact's side files and the compiled-package cache: every name and path, once.

A model is one TorchScript artifact `NAME.ifa.pt` and the files that go with it, found by name
beside it (docs/artifact.md):

- `NAME.ckpt.pt`: the training checkpoint it was exported from;
- `NAME.int8.pt`: its int8 calibration (observer statistics, the convolutions kept in fp32,
  the gate's report), compiled for each machine into a package on first use;
- `NAME.bf16.json` / `NAME.fp16.json`: the accuracy gate of a reduced precision;
- `*.pt2`: an AOTInductor package (machine code for one CPU and torch), kept in the cache
  (`cache_dir()`) under a key of the artifact's bytes, the plan, the machine and torch.

This module is the ground floor: it reads and names files and loads nothing compiled, so the
runtime (which decides what serves, `ifa_rt.runtime.prepare`) and deploy (which writes these
files) both use it without importing each other.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ARTIFACT_SUFFIX",
    "CALIBRATION_SUFFIX",
    "CALIBRATION_VERSION",
    "CHECKPOINT_SUFFIX",
    "PACKAGE_SUFFIX",
    "SIDE_FILES",
    "beside",
    "cache_dir",
    "cache_facts",
    "cache_key",
    "cached_path",
    "calibration_for",
    "compiled_cached_path",
    "cpu_flags",
    "file_sha256",
    "gate_suffix",
    "int8_cached_path",
    "load_calibration",
]

ARTIFACT_SUFFIX = ".ifa.pt"
CHECKPOINT_SUFFIX = ".ckpt.pt"
CALIBRATION_SUFFIX = ".int8.pt"
PACKAGE_SUFFIX = ".pt2"
CALIBRATION_VERSION = 1
# Part of every cache key: packages of another form are compiled anew, not reused.
PACKAGE_FORM = "coarse-logits-1"


def gate_suffix(precision: str) -> str:
    """The suffix of the gate record of a reduced precision: ".bf16.json", ".fp16.json"."""
    return f".{precision}.json"


# Every side file an artifact may have, with what it is (`ifa-rt info` lists them).
SIDE_FILES = (
    (ARTIFACT_SUFFIX, "artifact (TorchScript)"),
    (CHECKPOINT_SUFFIX, "training checkpoint"),
    (CALIBRATION_SUFFIX, "int8 calibration (observers + gate)"),
    (gate_suffix("bf16"), "bf16 gate"),
    (gate_suffix("fp16"), "fp16 gate"),
)


def beside(artifact: str | os.PathLike, suffix: str) -> Path:
    """The file that goes with an artifact: `name.ifa.pt` (or `name.pt`) -> `name<suffix>`."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name.removesuffix(".pt").removesuffix(".ifa") + suffix)


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of a file, read once per (path, size, modification time): the
    artifact is hashed by every cache key, calibration and gate check of one construction."""
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_for(artifact: str | Path) -> Path | None:
    """The int8 calibration beside an artifact (`name.ifa.pt` -> `name.int8.pt`), if any."""
    path = beside(artifact, CALIBRATION_SUFFIX)
    return path if path.is_file() else None


def load_calibration(path: str | Path, artifact: str | Path) -> dict[str, Any]:
    """An int8 calibration, checked to belong to `artifact`; ValueError saying what does not
    match. Its "quantization" entry (the gate's report) comes back parsed."""
    record = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(record, dict) or record.get("format_version") != CALIBRATION_VERSION:
        got = record.get("format_version") if isinstance(record, dict) else type(record).__name__
        raise ValueError(
            f"int8 calibration '{path}': 'format_version': expected {CALIBRATION_VERSION}, "
            f"got {got}"
        )
    digest = file_sha256(artifact)
    if record["artifact_sha256"] != digest:
        raise ValueError(
            f"int8 calibration '{path}': expected the calibration of '{artifact}' "
            f"(sha256 {digest[:12]}...), got one of another artifact "
            f"({record['artifact_sha256'][:12]}...); quantize this artifact again"
        )
    record["quantization"] = json.loads(record["quantization"])
    return record


def cpu_flags() -> set[str]:
    """This CPU's feature flags (/proc/cpuinfo "flags", or "Features" on Arm); empty elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def cache_dir() -> Path:
    """Where compiled packages are kept: $IFA_RT_CACHE, else $XDG_CACHE_HOME/ifa_rt/aoti."""
    explicit = os.environ.get("IFA_RT_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ifa_rt" / "aoti"


def cache_facts() -> dict[str, str]:
    """What a cached package's name depends on, cheap to read in every process: the CPU's
    flags decide inductor's vector ISA (probing it compiles, ~2.5 s), and the C++ runtime
    checks the package's ISA against them again before loading."""
    return {
        "device": "cpu",
        "cpu_flags": hashlib.sha256(" ".join(sorted(cpu_flags())).encode()).hexdigest()[:16],
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "torch_version": torch.__version__,
    }


def cache_key(
    artifact: Path,
    shapes: Sequence[tuple[int, int]],
    max_batch: int,
    threads: int,
    variant: str = "",
) -> str:
    """The cache name of a package: artifact bytes, plan, machine, torch (and a variant)."""
    digest = file_sha256(artifact)[:16]
    facts = cache_facts()
    plan = ",".join(f"{h}x{w}" for h, w in shapes)
    raw = (
        f"{digest}|{plan}|{max_batch}|{threads}|{json.dumps(facts, sort_keys=True)}|{variant}"
        f"|{PACKAGE_FORM}"
    )
    return f"{digest}-{hashlib.sha256(raw.encode()).hexdigest()[:16]}"


def cached_path(
    artifact: Path,
    shapes: Sequence[tuple[int, int]],
    max_batch: int,
    threads: int,
    variant: str = "",
) -> Path:
    """Where the cache keeps the package of this artifact and plan (it may not exist yet)."""
    key = cache_key(artifact, [(int(h), int(w)) for h, w in shapes], max_batch, threads, variant)
    return cache_dir() / f"{key}{PACKAGE_SUFFIX}"


def compiled_cached_path(
    artifact: Path,
    shapes: Sequence[tuple[int, int]],
    max_batch: int,
    threads: int,
    precision: str = "fp32",
) -> Path:
    """Where the cache keeps the package of `artifact` compiled in `precision` (fp32, bf16)."""
    variant = "" if precision == "fp32" else precision
    return cached_path(artifact, shapes, max_batch, threads, variant)


def int8_cached_path(
    artifact: Path,
    calibration: Path,
    shapes: Sequence[tuple[int, int]],
    max_batch: int,
    threads: int,
) -> Path:
    """Where the cache keeps the int8 package of this artifact, calibration and plan."""
    variant = "int8:" + file_sha256(calibration)[:16]
    return cached_path(artifact, shapes, max_batch, threads, variant)
