"""Preparing a model to run: which precision and engine serve it, and the compiled packages.

`Segmenter(model)` with the defaults `precision="auto"`, `runtime="auto"` asks `choose` what
to build, in this order of preference (the fastest first, measured on the bundled model):

- CPU: int8 (an AOTInductor package from the artifact's int8 recipe: the recipe passed its
  gate, the CPU has VNNI, shapes are planned, torchao is installed) > bf16 (its gate passed
  and the CPU computes bf16 natively: AVX512_BF16 or AMX) > fp32; bf16 and fp32 run as an
  AOTInductor package when shapes are planned, else on TorchScript;
- CUDA: fp16 > bf16 (gates passed) > fp32, on TorchScript graphs.

A package already in the cache is used at once; otherwise TorchScript serves while
`ifa_rt.tier_up.TierUp` compiles it in the background. `ifa-rt prepare` compiles ahead of time
into the same cache (`prepare_package`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .precision import gate_passed

__all__ = [
    "Choice",
    "choose",
    "compiled_for",
    "compiler",
    "package_path",
    "plan_args",
    "prepare_package",
]

log = logging.getLogger("ifa_rt")


@dataclass
class Choice:
    """What will serve a model: precision, runtime, the package (if any) and why."""

    precision: str
    runtime: str  # "aoti" (a compiled package) or the TorchScript runtime option
    package: Path | None = None  # the package that serves (cached or yet to compile)
    skipped: dict[str, str] = field(default_factory=dict)  # candidate -> why not

    @property
    def interim_precision(self) -> str:
        """What TorchScript serves while the package compiles (int8 packages: fp32)."""
        return "fp32" if self.precision == "int8" else self.precision

    def report(self) -> dict[str, Any]:
        """The choice as `plan["choice"]` shows it."""
        return {
            "precision": self.precision,
            "runtime": self.runtime,
            "package": str(self.package) if self.package else None,
            "skipped": dict(self.skipped),
        }


def compiler() -> str | None:
    """The C++ compiler AOTInductor would use ($CXX, else g++ or c++), or None."""
    named = os.environ.get("CXX")
    if named:
        return shutil.which(named)
    return shutil.which("g++") or shutil.which("c++")


def _cpu_flags() -> set[str]:
    from .deploy.quantize import cpu_flags

    return cpu_flags()


def int8_blocker(path: Path, settings: dict[str, Any], runtime: str) -> tuple[str, Path | None]:
    """Why int8 cannot serve here ('' when it can), and its recipe."""
    from .deploy.int8_recipe import load_recipe, recipe_for
    from .deploy.quantize import cpu_has_vnni

    recipe = recipe_for(path)
    if runtime not in ("auto", "aoti"):
        return f"int8 runs as a compiled package, and runtime is '{runtime}'", recipe
    if recipe is None:
        return "no int8 recipe beside the artifact", None
    if not settings.get("shapes"):
        return "int8 is compiled per planned shape and none were given", recipe
    if not cpu_has_vnni():
        return "this CPU has no VNNI (int8 would be slower than fp32)", recipe
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install 'ifa-rt[quantize]')", recipe
    if not load_recipe(recipe, path)["quantization"].get("gate", {}).get("passed", False):
        return "the int8 recipe failed its accuracy gate", recipe
    return "", recipe


def choose(path: Path, settings: dict[str, Any]) -> Choice:
    """The precision and runtime that serve `path` with these settings (see the module doc)."""
    runtime = settings.get("runtime") or "auto"
    precision = settings.get("precision", "auto")
    cuda = str(settings.get("device") or "cpu").startswith("cuda")
    if path.suffix == ".pt2":
        return Choice(precision if precision != "auto" else "fp32", "aoti", path)
    skipped: dict[str, str] = {}
    if precision == "auto":
        precision = "fp32"
        if cuda:
            skipped["int8"] = "int8 is a CPU path"
            for name in ("fp16", "bf16"):
                if gate_passed(path, name):
                    precision = name
                    break
                skipped[name] = f"no passed {name} gate for this artifact"
        else:
            why, _ = int8_blocker(path, settings, runtime)
            if not why:
                precision = "int8"
            else:
                skipped["int8"] = why
            if precision == "fp32":
                if not gate_passed(path, "bf16"):
                    skipped["bf16"] = "no passed bf16 gate for this artifact"
                elif not _cpu_flags() & {"avx512_bf16", "amx_bf16"}:
                    # Emulated bf16 is slower than fp32; native bf16 measured 1.8-2.0x faster
                    # with AVX512_BF16 alone (docs/benchmarks.md) and faster again with AMX.
                    skipped["bf16"] = "this CPU has no native bf16 (AVX512_BF16 or AMX)"
                else:
                    precision = "bf16"
    compiled = not cuda and precision in ("fp32", "int8", "bf16") and bool(settings.get("shapes"))
    if precision == "int8" or runtime == "aoti" or (runtime == "auto" and compiled):
        from .deploy.int8_recipe import recipe_for

        # Without shapes or a recipe there is nothing to compile: the Segmenter says why.
        known = settings.get("shapes") and (precision != "int8" or recipe_for(path) is not None)
        package = package_path(path, settings, precision) if known else None
        return Choice(precision, "aoti", package, skipped)
    return Choice(precision, runtime, None, skipped)


def plan_args(settings: dict[str, Any]) -> dict[str, Any]:
    """Shapes, max batch and threads a package is compiled for (a batch-invariant engine
    runs batch 1 only, so nothing else is compiled)."""
    import torch

    from . import _core

    invariant = settings.get("batch_invariant")
    if invariant is None:
        invariant = _core.Options().batch_invariant
    return {
        "shapes": [(int(h), int(w)) for h, w in settings["shapes"]],
        "max_batch": 1 if invariant else int(settings.get("max_batch") or 1),
        "threads": int(settings.get("threads") or torch.get_num_threads()),
    }


def package_path(path: Path, settings: dict[str, Any], precision: str) -> Path:
    """Where the cache keeps the package of `path` for these settings (it may not exist)."""
    if precision == "int8":
        from .deploy.int8_recipe import int8_cached_path, recipe_for

        return int8_cached_path(path, recipe_for(path), **plan_args(settings))
    from .deploy.aoti import compiled_cached_path

    return compiled_cached_path(path, **plan_args(settings), precision=precision)


def prepare_package(
    path: Path, settings: dict[str, Any], precision: str, show_progress: bool = True
) -> Path:
    """Compile the package of `path` into the cache (once per machine: concurrent processes
    wait on a lock and find it) and return its path."""
    import fcntl

    target = package_path(path, settings, precision)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        args = dict(plan_args(settings), show_progress=show_progress)
        if precision == "int8":
            from .deploy.int8_recipe import compile_int8, recipe_for

            return compile_int8(path, recipe_for(path), **args)
        from .deploy.aoti import compile_artifact

        return compile_artifact(path, precision=precision, **args)


def compiled_for(model: str | os.PathLike, where: str, kwargs: dict[str, Any]) -> str:
    """The file the engine loads: the artifact, or its package compiled for this machine.

    A TorchScript artifact with runtime="aoti" (or precision="int8", from the int8 recipe
    beside it) is compiled on first use and cached (`ifa_rt.deploy.aoti.compile_artifact`,
    `ifa_rt.deploy.int8_recipe.compile_int8`; progress shown); a `.pt2` is used as is.
    """
    from .bundled import resolve
    from .options import shapes_text

    path = resolve(model, where)
    int8 = kwargs.get("precision") == "int8"
    if path.suffix == ".pt2" or (not int8 and kwargs.get("runtime") != "aoti"):
        return str(path)
    if int8:
        from .precision import int8_recipe

        recipe = int8_recipe(path, where, kwargs.get("runtime"))
    shapes = kwargs.get("shapes")
    if not shapes:
        raise ValueError(
            f"{where}: 'shapes': expected the (height, width) sizes to compile for "
            f"{'precision' if int8 else 'runtime'} '{'int8' if int8 else 'aoti'}', got none"
        )
    shapes_text(shapes, where)  # type errors first, before a long compile
    plan = plan_args(kwargs)
    if int8:
        from .deploy.int8_recipe import compile_int8

        return str(compile_int8(path, recipe, **plan))
    from .deploy.aoti import compile_artifact

    precision = kwargs.get("precision") or "fp32"
    return str(compile_artifact(path, precision=precision, **plan))
