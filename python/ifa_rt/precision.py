"""Reduced precision for `Segmenter`: "int8" from an artifact's recipe, gates, and "auto".

precision="int8" on a TorchScript artifact compiles its int8 recipe (`name.int8.pt` beside
it; `ifa_rt.deploy.int8_recipe`) for this machine on first use, cached. bf16 and fp16 need no
recipe, only a passed gate: `ifa_rt.precision_gate.gate_precision` measures one through the
C++ runtime and writes `name.bf16.json` / `name.fp16.json` beside the artifact (`ifa-rt
quantize --precision bf16`).

precision="auto" builds every precision that may serve here, times each on the first planned
shape with the same probe image, keeps the fastest engine and reports the probe in
`Segmenter.plan["precision_probe"]`: fp32 always; int8 when its recipe passed the gate, the
CPU has VNNI and shapes are planned; bf16 when its gate passed and the CPU computes bf16
natively (AVX512_BF16 or AMX; whether that beats fp32 depends on the model, so the probe
decides) or the device is CUDA; fp16 on CUDA when its gate passed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["choose_precision", "gate_file", "int8_recipe"]

GATE_VERSION = 1

PROBE_RUNS = 5  # per candidate, after the engine's own warm-up; interleaved


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


def gate_file(artifact: Path, precision: str) -> Path:
    """Where the gate of `precision` for `artifact` lives: `name.<precision>.json` beside it."""
    from .deploy.artifact import beside

    return beside(artifact, f".{precision}.json")


def _gate_passed(artifact: Path, precision: str) -> bool:
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


def candidates(path: Path, settings: dict[str, Any]) -> tuple[list[str], str]:
    """The precisions worth probing for this artifact here, and why others are not."""
    from .deploy.int8_recipe import load_recipe, recipe_for
    from .deploy.quantize import cpu_flags, cpu_has_vnni

    if path.suffix == ".pt2":
        return [], "a package runs the precision it was compiled for"
    cuda = str(settings.get("device") or "cpu").startswith("cuda")
    names, why = ["fp32"], []
    if cuda:
        names += [p for p in ("fp16", "bf16") if _gate_passed(path, p)]
        why.append("int8 is a CPU path")
        return names, "; ".join(why)
    if _gate_passed(path, "bf16"):
        # Native bf16 (AVX512_BF16 or AMX); emulated bf16 is always slower than fp32. Whether
        # native bf16 pays off depends on the model and the layout (on this project's
        # AVX512_BF16 CPU: lite0 1.8x and R50 2.0x faster with channels-last weights, R50
        # slower without them): the probe decides.
        if cpu_flags() & {"avx512_bf16", "amx_bf16"}:
            names.append("bf16")
        else:
            why.append("bf16 passed its gate but this CPU has no native bf16 (AVX512_BF16/AMX)")
    recipe = recipe_for(path)
    if recipe is None:
        why.append("no int8 recipe beside the artifact")
    elif not settings.get("shapes"):
        why.append("int8 is compiled per planned shape and none were given")
    elif not cpu_has_vnni():
        why.append("this CPU has no VNNI")
    elif not load_recipe(recipe, path)["quantization"].get("gate", {}).get("passed", False):
        why.append("the int8 recipe failed its accuracy gate")
    else:
        names.append("int8")
    return names, "; ".join(why)


def choose_precision(path: Path, settings: dict[str, Any], build) -> tuple[Any, dict[str, Any]]:
    """(engine, probe report): the fastest gated precision here, measured.

    `build(precision)` constructs the engine for a precision (settings otherwise equal).
    """
    names, why = candidates(path, settings)
    if not names:
        return build("fp32"), {"chosen": "package", "reason": why}
    if len(names) > 1 and not settings.get("shapes"):
        names = ["fp32"]
        why = "; ".join(filter(None, [why, "no planned shape to time the candidates on"]))
    engines = {name: build(name) for name in names}
    report: dict[str, Any] = {"candidates": names}
    if why:
        report["reason"] = why
    if len(names) == 1:
        report["chosen"] = names[0]
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
