"""Reduced precision for `Segmenter`: "int8" from an artifact's recipe, and the gates.

precision="int8" on a TorchScript artifact compiles its int8 recipe (`name.int8.pt` beside
it; `ifa_rt.deploy.int8_recipe`) for this machine on first use, cached. bf16 and fp16 need no
recipe, only a passed gate: `ifa_rt.precision_gate.gate_precision` measures one through the
C++ runtime and writes `name.bf16.json` / `name.fp16.json` beside the artifact (`ifa-rt
quantize --precision bf16`). A bundled model's folder is part of the installed package, so
its new gates go to the user cache instead (`gate_output`); its shipped gates stay in the
bundle and are read when the cache has none (`gate_file`). precision="auto" (the default) is
decided by `ifa_rt.prepare`.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["gate_cache_dir", "gate_file", "gate_output", "gate_passed", "int8_recipe"]

GATE_VERSION = 1


def int8_recipe(path: Path, where: str, runtime: str | None) -> Path:
    """The int8 recipe beside a TorchScript artifact, or ValueError saying why int8 cannot run
    (`Segmenter` then compiles it: `ifa_rt.deploy.int8_recipe.compile_int8`)."""
    from .deploy.int8_recipe import RECIPE_SUFFIX, recipe_for

    if runtime not in (None, "auto", "aoti"):
        raise ValueError(
            f"{where}: 'runtime': expected 'auto' or 'aoti' for precision 'int8' (an "
            f"AOTInductor package), got '{runtime}'"
        )
    recipe = recipe_for(path)
    if recipe is None:
        raise ValueError(
            f"{where}: 'precision': 'int8' needs the artifact's int8 recipe "
            f"({path.name.removesuffix('.ifa.pt')}{RECIPE_SUFFIX} beside it), got none; "
            "write one with `ifa-rt quantize --recipe`"
        )
    return recipe


def gate_cache_dir() -> Path:
    """Where gates of bundled models are written: `gates/` in the compiled-package cache."""
    from .deploy.aoti import cache_dir

    return cache_dir() / "gates"


def gate_output(artifact: Path, precision: str) -> Path:
    """Where a new gate of `precision` for `artifact` is written: `name.<precision>.json`
    beside it, or for a bundled model (whose folder may be a read-only site-packages) in
    `gate_cache_dir()`, named by the artifact's bytes so an upgraded bundle starts afresh."""
    from .bundled import is_bundled
    from .deploy.artifact import beside, file_sha256

    if not is_bundled(artifact):
        return beside(artifact, f".{precision}.json")
    stem = Path(artifact).name.removesuffix(".pt").removesuffix(".ifa")
    digest = file_sha256(artifact)[:16]
    return gate_cache_dir() / f"{stem}-{digest}.{precision}.json"


def gate_file(artifact: Path, precision: str) -> Path:
    """Where the gate of `precision` for `artifact` is read: `gate_output`'s file when it
    exists, else `name.<precision>.json` beside the artifact (a bundled model's shipped gate)."""
    from .deploy.artifact import beside

    written = gate_output(artifact, precision)
    return written if written.is_file() else beside(artifact, f".{precision}.json")


def gate_passed(artifact: Path, precision: str) -> bool:
    """True when `precision` has a passed gate written for exactly this artifact."""
    path = gate_file(artifact, precision)
    if not path.is_file():
        return False
    from .deploy.artifact import file_sha256

    record = json.loads(path.read_text())
    return (
        record.get("format_version") == GATE_VERSION
        and record.get("artifact_sha256") == file_sha256(artifact)
        and bool(record.get("gate", {}).get("passed"))
    )
