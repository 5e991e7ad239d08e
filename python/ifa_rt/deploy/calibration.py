"""int8 recipes: an artifact's calibration, kept so its int8 model compiles on any VNNI CPU.

An AOTInductor package is machine code for one CPU and one torch, so the int8 model cannot
ship as a package. What quantization learned from images is small, though: the observers'
statistics and which convolutions stay fp32. `ifa-rt quantize --recipe R` saves them with
the gate's report; `compile_int8(artifact, R, shapes)` rebuilds the same int8 graph from the
artifact and compiles it for this machine, once (cached like `compile_artifact`). The bundled
`camvid` ships `camvid.int8.pt`, which `Segmenter("camvid", precision="int8", shapes=...)`
uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .aoti import cached_path, compile_with_progress
from .artifact import beside, file_sha256
from .quantize import RECIPE_VERSION, _Calibrated, cpu_has_vnni
from .rebuild import rebuild_from_artifact

__all__ = ["compile_int8", "int8_cached_path", "load_recipe", "recipe_for"]

RECIPE_SUFFIX = ".int8.pt"


def recipe_for(artifact: str | Path) -> Path | None:
    """The recipe beside an artifact (`name.ifa.pt` -> `name.int8.pt`), if there is one."""
    path = beside(artifact, RECIPE_SUFFIX)
    return path if path.is_file() else None


def load_recipe(path: str | Path, artifact: str | Path) -> dict[str, Any]:
    """A recipe, checked to belong to `artifact`; ValueError saying what does not match."""
    recipe = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(recipe, dict) or recipe.get("format_version") != RECIPE_VERSION:
        got = recipe.get("format_version") if isinstance(recipe, dict) else type(recipe).__name__
        raise ValueError(
            f"int8 recipe '{path}': 'format_version': expected {RECIPE_VERSION}, got {got}"
        )
    digest = file_sha256(artifact)
    if recipe["artifact_sha256"] != digest:
        raise ValueError(
            f"int8 recipe '{path}': expected the calibration of '{artifact}' "
            f"(sha256 {digest[:12]}...), got one of another artifact "
            f"({recipe['artifact_sha256'][:12]}...); quantize this artifact again"
        )
    recipe["quantization"] = json.loads(recipe["quantization"])
    return recipe


def int8_cached_path(
    artifact: Path, recipe: Path, shapes: Sequence[tuple[int, int]], max_batch: int, threads: int
) -> Path:
    """Where the cache keeps the int8 package of this artifact, recipe and plan."""
    return cached_path(artifact, shapes, max_batch, threads, "int8:" + file_sha256(recipe)[:16])


def compile_int8(
    artifact: str | Path,
    recipe: str | Path,
    *,
    shapes: Sequence[tuple[int, int]],
    max_batch: int = 1,
    threads: int | None = None,
    show_progress: bool = True,
) -> Path:
    """The int8 package of `artifact` from its recipe, compiled once per machine and plan.

    Raises RuntimeError on a CPU without VNNI (int8 would be slower than fp32 there) and
    ValueError for a recipe of another artifact or a recipe whose gate failed.
    """
    if not cpu_has_vnni():
        raise RuntimeError(
            "precision 'int8': needs a CPU with VNNI (avx512_vnni, avx_vnni or amx_int8); "
            "this CPU has none, so int8 would be slower than fp32 here"
        )
    artifact, recipe = Path(artifact), Path(recipe)
    threads = int(threads or torch.get_num_threads())
    shapes = [(int(h), int(w)) for h, w in shapes]
    target = int8_cached_path(artifact, recipe, shapes, max_batch, threads)
    if target.is_file():
        return target
    spec = load_recipe(recipe, artifact)
    facts = spec["quantization"]
    if not facts.get("gate", {}).get("passed", False):
        raise ValueError(f"int8 recipe '{recipe}': its accuracy gate failed; it is not used")
    wrapper, meta = rebuild_from_artifact(artifact, coarse=True)
    calibrated = _Calibrated.from_state(wrapper, spec["observers"], spec["keep_fp32"])
    compile_with_progress(
        wrapper,
        meta,
        artifact,
        target,
        shapes,
        max_batch,
        threads,
        "int8",
        show_progress,
        precision="int8",
        compile_bucket=calibrated.compile,
        extra={"quantization": dict(facts, recipe=recipe.name)},
    )
    return target
