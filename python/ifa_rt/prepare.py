"""Preparing a model to run: which precision and engine serve it, and the compiled packages.

`Segmenter(model)` with the defaults `precision="auto"`, `runtime="auto"` asks `choose` what
to build, in this order of preference (the fastest first, measured on the bundled model):

- CPU: int8 (an AOTInductor package from the artifact's int8 recipe: the recipe passed its
  gate, the CPU has VNNI, shapes are planned, torchao is installed) > bf16 (its gate passed
  and the CPU has AMX, the only CPUs where bf16 beats fp32) > fp32 (an AOTInductor package
  when shapes are planned, else TorchScript);
- CUDA: fp16 > bf16 (gates passed) > fp32, on TorchScript graphs.

A package already in the cache is used at once. Otherwise the Segmenter serves on TorchScript
at once and `TierUp` compiles the package in a background process (lower priority, one
compile thread), verifies it against the serving engine on a real frame, and swaps it in
between calls. `ifa-rt prepare` compiles ahead of time into the same cache.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Choice", "TierUp", "choose", "compiler", "package_path", "prepare_package"]

log = logging.getLogger("ifa_rt")

# Agreement with the serving engine a swapped-in engine must reach on the verification frame:
# fp32 is the same model compiled otherwise; int8 was gated on real frames already, this only
# catches a broken compile (a real frame agrees ~99 %).
VERIFY_AGREEMENT = {"fp32": 0.999, "int8": 0.9}
# "0": no background compiles (a cached package is still used; else TorchScript serves).
TIER_UP_ENV = "IFA_RT_TIER_UP"


@dataclass
class Choice:
    """What will serve a model: precision, runtime, the package (if any) and why."""

    precision: str
    runtime: str  # "aoti" (a compiled package) or the TorchScript runtime option
    package: Path | None = None  # the package that serves (cached or yet to compile)
    recipe: Path | None = None  # the int8 recipe the package compiles from
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


def _gate_passed(path: Path, precision: str) -> bool:
    from .precision import gate_passed

    return gate_passed(path, precision)


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
                if _gate_passed(path, name):
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
                if runtime == "aoti":
                    skipped["bf16"] = "compiled packages are fp32 or int8, and runtime is 'aoti'"
                elif not _gate_passed(path, "bf16"):
                    skipped["bf16"] = "no passed bf16 gate for this artifact"
                elif "amx_bf16" not in _cpu_flags():
                    skipped["bf16"] = "this CPU has no AMX (bf16 is slower than fp32 without it)"
                else:
                    precision = "bf16"
    compiled = not cuda and precision in ("fp32", "int8") and bool(settings.get("shapes"))
    if precision == "int8" or runtime == "aoti" or (runtime == "auto" and compiled):
        recipe = int8_blocker(path, settings, "aoti")[1] if precision == "int8" else None
        # Without shapes or a recipe there is nothing to compile: the Segmenter says why.
        known = settings.get("shapes") and (precision != "int8" or recipe is not None)
        package = package_path(path, settings, precision) if known else None
        return Choice(precision, "aoti", package, recipe, skipped)
    return Choice(precision, runtime, None, None, skipped)


def _plan_args(settings: dict[str, Any]) -> dict[str, Any]:
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

        return int8_cached_path(path, recipe_for(path), **_plan_args(settings))
    from .deploy.aoti import cached_path

    return cached_path(path, **_plan_args(settings))


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
        args = dict(_plan_args(settings), show_progress=show_progress)
        if precision == "int8":
            from .deploy.int8_recipe import compile_int8, recipe_for

            return compile_int8(path, recipe_for(path), **args)
        from .deploy.aoti import compile_artifact

        return compile_artifact(path, **args)


def _synthetic_frame(height: int, width: int) -> np.ndarray:
    """A frame with structure (gradients and blocks) for verification before any real one."""
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack(
        [
            x * 255 // max(width - 1, 1),
            y * 255 // max(height - 1, 1),
            ((x // 32 + y // 32) % 2) * 200,
        ],
        axis=-1,
    )
    return frame.astype(np.uint8)


class TierUp:
    """Compiles a runner's package in the background and swaps it in once verified.

        The compile runs in a child process (`ifa-rt prepare`, niced, one thread), so serving keeps
        the GIL and the cores' priority; the engine is then built here (GIL released), checked
        against the serving engine on the most recent real frame of a planned shape, and handed to
        `runner._swap` between calls. `state`: compiling, loading, serving, failed, unavailable
    (no C++ compiler), disabled ($IFA_RT_TIER_UP=0).
    """

    def __init__(
        self, runner: Any, model_path: Path, choice: Choice, settings: dict[str, Any], build: Any
    ) -> None:
        self._runner = runner
        self._path = model_path
        self._choice = choice
        self._settings = settings
        self._build = build
        self._frame: np.ndarray | None = None
        self.state = "compiling"
        self.reason = ""
        self.compile_s: float | None = None
        self.agreement: float | None = None
        self._thread = threading.Thread(target=self._run, name="ifa_rt-tier-up", daemon=True)
        if os.environ.get(TIER_UP_ENV, "1") == "0":
            self.state, self.reason = "disabled", f"{TIER_UP_ENV}=0: staying on TorchScript"
            return
        self._thread.start()

    def offer(self, image: np.ndarray) -> None:
        """Keep a copy of a real frame of a planned shape for the verification (once)."""
        if self._frame is None and self.state in ("compiling", "loading") and image.ndim == 3:
            if tuple(image.shape[:2]) in {tuple(s) for s in self._settings["shapes"]}:
                self._frame = np.array(image, copy=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the tier-up ended (swapped in or given up); False on timeout."""
        if self.state == "disabled":
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def report(self) -> dict[str, Any]:
        """State, reason, compile seconds and the verification's agreement."""
        return {
            "state": self.state,
            "reason": self.reason,
            "compile_s": self.compile_s,
            "agreement": self.agreement,
            "package": str(self._choice.package),
        }

    def _compile(self) -> None:
        plan = _plan_args(self._settings)
        command = [
            sys.executable,
            "-m",
            "ifa_rt.cli",
            "prepare",
            str(self._path),
            "--precision",
            self._choice.precision,
            "--threads",
            str(plan["threads"]),
            "--shapes",
            ",".join(f"{h}x{w}" for h, w in plan["shapes"]),
            "--max-batch",
            str(plan["max_batch"]),
            "--quiet",
            "--nice",
            "10",
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"exit status {done.returncode}")

    def _run(self) -> None:
        t0 = time.perf_counter()
        try:
            if compiler() is None:
                self.state = "unavailable"
                self.reason = "no C++ compiler ($CXX, g++ or c++): staying on TorchScript"
                log.warning("ifa_rt: %s", self.reason)
                return
            if not self._choice.package.is_file():
                self._compile()
            self.compile_s = round(time.perf_counter() - t0, 1)
            self.state = "loading"
            engine = self._build(self._choice.package)
            h, w = self._settings["shapes"][0]
            frame = self._frame if self._frame is not None else _synthetic_frame(int(h), int(w))
            now, new = self._runner.segment(frame), np.empty(frame.shape[:2], np.uint8)
            engine.segment_into(frame, new)
            self.agreement = float((now == new).mean())
            need = VERIFY_AGREEMENT[self._choice.precision]
            if self.agreement < need:
                raise RuntimeError(
                    f"the compiled engine agrees with TorchScript on {self.agreement:.4f} of "
                    f"the verification frame's pixels, needs >= {need}; not swapped in"
                )
            self._runner._swap(engine)
            self.state = "serving"
            log.info(
                "ifa_rt: tier-up to %s %s after %.1f s",
                self._choice.runtime,
                self._choice.precision,
                time.perf_counter() - t0,
            )
        except Exception as exc:  # noqa: BLE001 - any failure leaves TorchScript serving
            self.state, self.reason = "failed", str(exc)
            log.warning("ifa_rt: tier-up failed, staying on TorchScript: %s", exc)
