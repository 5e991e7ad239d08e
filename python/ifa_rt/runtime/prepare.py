"""Preparing a model to run: which precision and engine serve it, and the compiled packages.

`Segmenter(model)` with the defaults `precision="auto"`, `runtime="auto"` asks `choose` what
to build, in this order of preference (the fastest first, measured on the bundled model):

- CPU: int8 (an AOTInductor package from the artifact's int8 calibration: it passed its
  gate, the CPU has VNNI, shapes are planned, torchao is installed) > bf16 (its gate passed
  and the CPU computes bf16 natively: AVX512_BF16 or AMX) > fp32; bf16 and fp32 run as an
  AOTInductor package when shapes are planned, else on TorchScript;
- CUDA: fp16 > bf16 (gates passed) > fp32, on TorchScript graphs.

A package already in the cache is used at once; otherwise TorchScript serves while
`ifa_rt.runtime.tier_up.TierUp` compiles it in the background. Compiling is deploy's work and
runs in a child process (`ifa-rt prepare`, `compile_command`), also when a package is asked
for by name (`compiled_for`): the runtime reads side files (`ifa_rt.side_files`) and never
imports deploy. `ifa-rt prepare` compiles ahead of time into the same cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..side_files import (
    calibration_for,
    compiled_cached_path,
    int8_cached_path,
    load_calibration,
)
from .precision import cpu_has_native_bf16, cpu_has_vnni, gate_passed, int8_calibration

__all__ = [
    "Choice",
    "choose",
    "compiled_for",
    "compiler",
    "package_path",
    "compile_command",
    "int8_blocker",
    "plan_args",
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


def int8_blocker(path: Path, settings: dict[str, Any], runtime: str) -> tuple[str, Path | None]:
    """Why int8 cannot serve here ('' when it can), and its calibration file."""
    calibration = calibration_for(path)
    if runtime not in ("auto", "aoti"):
        return f"int8 runs as a compiled package, and runtime is '{runtime}'", calibration
    if calibration is None:
        return "no int8 calibration beside the artifact", None
    if not settings.get("shapes"):
        return "int8 is compiled per planned shape and none were given", calibration
    if not cpu_has_vnni():
        return "this CPU has no VNNI (int8 would be slower than fp32)", calibration
    if importlib.util.find_spec("torchao") is None:
        return "torchao is not installed (pip install 'ifa-rt[quantize]')", calibration
    record = load_calibration(calibration, path)
    if not record["quantization"].get("gate", {}).get("passed", False):
        return "the int8 calibration failed its accuracy gate", calibration
    return "", calibration


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
                elif not cpu_has_native_bf16():
                    skipped["bf16"] = "this CPU has no native bf16 (AVX512_BF16 or AMX)"
                else:
                    precision = "bf16"
    compiled = not cuda and precision in ("fp32", "int8", "bf16") and bool(settings.get("shapes"))
    if precision == "int8" or runtime == "aoti" or (runtime == "auto" and compiled):
        # Without shapes or a calibration there is nothing to compile: the Segmenter says why.
        known = settings.get("shapes") and (
            precision != "int8" or calibration_for(path) is not None
        )
        package = package_path(path, settings, precision) if known else None
        return Choice(precision, "aoti", package, skipped)
    return Choice(precision, runtime, None, skipped)


def plan_args(settings: dict[str, Any]) -> dict[str, Any]:
    """Shapes, max batch and threads a package is compiled for (a batch-invariant engine
    runs batch 1 only, so nothing else is compiled)."""
    import torch

    from .extension import core

    invariant = settings.get("batch_invariant")
    if invariant is None:
        invariant = core.Options().batch_invariant
    return {
        "shapes": [(int(h), int(w)) for h, w in settings["shapes"]],
        "max_batch": 1 if invariant else int(settings.get("max_batch") or 1),
        "threads": int(settings.get("threads") or torch.get_num_threads()),
    }


def package_path(path: Path, settings: dict[str, Any], precision: str) -> Path:
    """Where the cache keeps the package of `path` for these settings (it may not exist)."""
    if precision == "int8":
        return int8_cached_path(path, calibration_for(path), **plan_args(settings))
    return compiled_cached_path(path, **plan_args(settings), precision=precision)


def compile_command(
    path: Path, precision: str, plan: dict[str, Any], quiet: bool = True, nice: int = 0
) -> list[str]:
    """The `ifa-rt prepare` command that compiles the package of `path` for `plan` into the
    cache (`plan_args`): one child process, so a compile never shares the server's GIL."""
    command = [sys.executable, "-m", "ifa_rt.cli", "prepare", str(path)]
    command += ["--precision", precision, "--threads", str(plan["threads"])]
    command += ["--shapes", ",".join(f"{h}x{w}" for h, w in plan["shapes"])]
    if plan["max_batch"] > 1:
        command += ["--batched", "--max-batch", str(plan["max_batch"])]
    if quiet:
        command.append("--quiet")
    if nice:
        command += ["--nice", str(nice)]
    return command


def run_compile(command: list[str], env: dict[str, str] | None = None, show: bool = False) -> None:
    """Run a `compile_command`; RuntimeError with its last line of output when it fails.
    `show`: its progress (stderr) is passed on to this process's stderr as it comes."""
    if not show:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        code, output = done.returncode, done.stderr or done.stdout or ""
    else:
        tail = b""
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE) as child:
            while chunk := child.stderr.read1(1 << 12):
                sys.stderr.write(chunk.decode(errors="replace"))
                sys.stderr.flush()
                tail = (tail + chunk)[-(1 << 13) :]
        code, output = child.returncode, tail.decode(errors="replace")
    if code != 0:
        lines = output.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {code}")


def compiled_for(path: Path, where: str, kwargs: dict[str, Any]) -> str:
    """The file the engine loads for the resolved artifact `path`: the artifact, or its package
    compiled for this machine.

    A TorchScript artifact with runtime="aoti" (or precision="int8", from the int8
    calibration beside it) is compiled on first use into the cache (`compile_command`,
    progress shown); a `.pt2` is used as is.
    """
    int8 = kwargs.get("precision") == "int8"
    if path.suffix == ".pt2" or (not int8 and kwargs.get("runtime") != "aoti"):
        return str(path)
    if int8:
        calibration = int8_calibration(path, where, kwargs.get("runtime"))
        if not load_calibration(calibration, path)["quantization"].get("gate", {}).get("passed"):
            raise ValueError(
                f"{where}: 'precision': int8 calibration '{calibration}': its accuracy gate "
                "failed; it is not used"
            )
    shapes = kwargs.get("shapes")
    if not shapes:
        raise ValueError(
            f"{where}: 'shapes': expected the (height, width) sizes to compile for "
            f"{'precision' if int8 else 'runtime'} '{'int8' if int8 else 'aoti'}', got none"
        )
    if int8 and not cpu_has_vnni():
        raise RuntimeError(
            f"{where}: precision 'int8': int8 needs a CPU with VNNI (avx512_vnni, avx_vnni or "
            "amx_int8); this CPU has none, so int8 would be slower than fp32 here"
        )
    precision = kwargs.get("precision") or "fp32"
    target = package_path(path, kwargs, precision)
    if not target.is_file():
        run_compile(compile_command(path, precision, plan_args(kwargs), quiet=False), show=True)
    return str(target)
