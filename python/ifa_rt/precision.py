"""Reduced precision for `Segmenter`: "int8" from an artifact's recipe, and "auto".

precision="int8" on a TorchScript artifact compiles its int8 recipe (`name.int8.pt` beside
it; `ifa_rt.deploy.int8_recipe`) for this machine on first use, cached. precision="auto"
builds every precision that may serve here (fp32 always; int8 when a recipe passed its
accuracy gate and the CPU has VNNI, and shapes are planned), times each on the first planned
shape with the same probe image, keeps the fastest engine and reports the probe in
`Segmenter.plan["precision_probe"]`. bf16/fp16 are not candidates: on CPUs without AMX they are
slower than fp32, and their label agreement is not gated yet.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from . import _core

__all__ = ["choose_precision", "int8_package"]

PROBE_RUNS = 5  # per candidate, after the engine's own warm-up; interleaved


def int8_package(path: Path, where: str, settings: dict[str, Any]) -> Path:
    """The compiled int8 package of a TorchScript artifact, from the recipe beside it."""
    from .deploy.int8_recipe import RECIPE_SUFFIX, compile_int8, recipe_for

    if settings.get("runtime") not in (None, "auto", "aoti"):
        raise ValueError(
            f"{where}: 'runtime': expected 'auto' or 'aoti' for precision 'int8' (an "
            f"AOTInductor package), got '{settings['runtime']}'"
        )
    recipe = recipe_for(path)
    if recipe is None:
        raise ValueError(
            f"{where}: 'precision': 'int8' needs the artifact's int8 recipe "
            f"({path.name.removesuffix('.ifa.pt')}{RECIPE_SUFFIX} beside it), got none; "
            "write one with `ifa-rt quantize --recipe`"
        )
    shapes = settings.get("shapes")
    if not shapes:
        raise ValueError(
            f"{where}: 'shapes': expected the (height, width) sizes to compile for precision "
            "'int8', got none"
        )
    return compile_int8(
        path,
        recipe,
        shapes=[(int(h), int(w)) for h, w in shapes],
        max_batch=int(settings.get("max_batch") or _core.Options().max_batch),
        threads=settings.get("threads"),
    )


def candidates(path: Path, settings: dict[str, Any]) -> tuple[list[str], str]:
    """The precisions worth probing for this artifact here, and why int8 is not one if not."""
    from .deploy.int8_recipe import load_recipe, recipe_for
    from .deploy.quantize import cpu_has_vnni

    if path.suffix == ".pt2":
        return [], "a package runs the precision it was compiled for"
    if settings.get("device", "cpu") != "cpu":
        return ["fp32"], "int8 is a CPU path"
    recipe = recipe_for(path)
    if recipe is None:
        return ["fp32"], "no int8 recipe beside the artifact"
    if not settings.get("shapes"):
        return ["fp32"], "int8 is compiled per planned shape and none were given"
    if not cpu_has_vnni():
        return ["fp32"], "this CPU has no VNNI"
    if not load_recipe(recipe, path)["quantization"].get("gate", {}).get("passed", False):
        return ["fp32"], "the int8 recipe failed its accuracy gate"
    return ["fp32", "int8"], ""


def choose_precision(path: Path, settings: dict[str, Any], build) -> tuple[Any, dict[str, Any]]:
    """(engine, probe report): the fastest gated precision here, measured.

    `build(precision)` constructs the engine for a precision (settings otherwise equal).
    """
    names, why = candidates(path, settings)
    if not names:
        return build("fp32"), {"chosen": "package", "reason": why}
    engines = {name: build(name) for name in names}
    report: dict[str, Any] = {"candidates": names}
    if len(names) == 1:
        report.update(chosen=names[0], reason=why)
        return engines[names[0]], report
    h, w = settings["shapes"][0]
    image = np.random.default_rng(0).integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for _ in range(PROBE_RUNS):
        for name, engine in engines.items():  # interleaved: load changes hit both alike
            out = np.empty((int(h), int(w)), np.uint8)
            t0 = time.perf_counter()
            engine.segment_into(image, out)
            times[name].append((time.perf_counter() - t0) * 1e3)
    medians = {name: float(np.median(t)) for name, t in times.items()}
    chosen = min(medians, key=medians.get)
    report.update(
        chosen=chosen,
        median_ms=medians,
        shape=[int(h), int(w)],
        runs=PROBE_RUNS,
        probe_ms=round((time.perf_counter() - start) * 1e3, 1),
    )
    return engines[chosen], report
