"""Serving while a faster engine compiles: `Tiered` (the runner's engine slot) and `TierUp`.

A runner (`Segmenter`, `SegmenterPool`) builds the engine `ifa_rt.runtime.prepare.choose`
asks for. When that is a compiled package not yet in the cache, TorchScript serves at once
and `TierUp` compiles the package in a child process (`ifa-rt prepare`, niced, one compile
thread), builds its engine here (GIL released), checks it against the serving engine on the
most recent real frame of a planned shape, and hands it to `Tiered._swap` between calls.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..bundled import resolve
from .extension import core as _core
from .inputs import type_name
from .prepare import (
    Choice,
    choose,
    compile_command,
    compiled_for,
    compiler,
    plan_args,
    run_compile,
)

__all__ = ["TIER_UP_ENV", "TierUp", "Tiered", "engine_calls", "engine_label"]

log = logging.getLogger("ifa_rt")
_swap_lock = threading.Lock()
# Agreement with the serving engine a swapped-in engine must reach on the verification frame:
# fp32 is the same model compiled otherwise; int8 was gated on real frames already, this only
# catches a broken compile (a real frame agrees ~99 %).
VERIFY_AGREEMENT = {"fp32": 0.999, "int8": 0.9, "bf16": 0.9}
# "0": no background compiles (a cached package is still used; else TorchScript serves).
TIER_UP_ENV = "IFA_RT_TIER_UP"


def engine_label(engine: Any) -> str:
    """'<runtime> <precision>' of a _core.Segmenter or of a pool's first engine."""
    if isinstance(engine, _core.SegmenterPool):
        engine = engine.engine(0)
    plan = engine.plan()
    return f"{plan['runtime']} {plan['precision']}"


def engine_calls(engine: Any) -> int:
    """Calls served by a _core.Segmenter or by all of a pool's engines."""
    if isinstance(engine, _core.SegmenterPool):
        return sum(int(engine.engine(i).stats()["calls"]) for i in range(engine.size))
    return int(engine.stats()["calls"])


class Tiered:
    """The engine slot of a runner: which engine serves, how it was chosen, the swap."""

    _engine: Any
    _tier: Any = None  # TierUp while a faster engine compiles
    _choice: Any = None  # ifa_rt.runtime.prepare.Choice
    _history: tuple[tuple[str, int], ...] = ()  # (engine label, calls) of swapped-out engines
    _planned: set[tuple[int, int]] | None = None  # sizes the serving engine plans (learned too)

    @property
    def engine(self) -> str:
        """'<runtime> <precision>' of the engine serving now (it changes when a background
        tier-up swaps a compiled engine in); cheaper than `stats()["engine"]`."""
        return engine_label(self._engine)

    def _start(
        self,
        model: str | os.PathLike,
        where: str,
        options: Any,
        precision: str,
        make: Callable[[str | os.PathLike, Any], Any],
    ) -> Callable[[], None]:
        """Build the engine that serves now (`ifa_rt.runtime.prepare.choose` decides from
        `options`, an `ifa_rt.Options`, and `precision`, which may be "auto"); returns what
        starts the tier-up, to call once the runner is complete."""
        path = resolve(model, where)
        if not isinstance(precision, str):
            raise TypeError(f"{where}: 'precision': expected a str, got {type_name(precision)}")
        if precision != "auto":
            options = options.replace(precision=precision)  # a bad name: its ValueError now
        settings = dict(options.to_dict(), precision=precision)
        runtime = options.runtime

        def built(file: str | os.PathLike, precision: str, runtime: str | None = None) -> Any:
            return make(file, options.replace(precision=precision, runtime=runtime))

        if path.suffix == ".pt2":  # a package runs the precision it was compiled for
            self._engine = built(path, "fp32" if precision == "auto" else precision)
            return lambda: None
        choice = self._choice = choose(path, settings)
        if precision == "int8" or runtime != "auto":
            # Asked for by name: built now (an int8 or aoti compile shows its progress).
            chosen = dict(settings, precision=choice.precision)
            self._engine = built(compiled_for(path, where, chosen), choice.precision)
            return lambda: None
        if choice.runtime != "aoti":
            self._engine = built(path, choice.precision)
            return lambda: None
        if choice.package.is_file():
            try:
                self._engine = built(choice.package, choice.precision, "aoti")
                return lambda: None
            except RuntimeError as exc:  # corrupt, or compiled for another machine: rebuild
                log.warning(
                    "ifa_rt: cached package %s refused (%s); rebuilding", choice.package, exc
                )
                choice.package.unlink(missing_ok=True)
        self._engine = built(path, choice.interim_precision)

        def start_tier() -> None:
            self._tier = TierUp(
                self, path, choice, settings, lambda p: built(p, choice.precision, "aoti")
            )

        return start_tier

    def _swap(self, engine: Any) -> None:
        """Serve from `engine` from the next call on; calls in flight finish on the old one,
        requests queued for `submit` run on it before its batcher closes."""
        with _swap_lock:
            old = self._engine
            self._history += ((engine_label(old), engine_calls(old)),)
            self._engine = engine
            self._planned = None
            batcher = self.__dict__.pop("_batcher", None)
        if batcher is not None:
            batcher.close(drain=True)

    def _note_size(self, shape: tuple[int, ...]) -> None:
        """After a call on an image [.., H, W, 3]: logs the sizes the engine has planned since
        (`learn_shapes`); a planned size costs one set lookup."""
        if len(shape) < 3:
            return
        size = (int(shape[-3]), int(shape[-2]))
        if self._planned is not None and size in self._planned:
            return
        engines = [self._engine]
        if isinstance(self._engine, _core.SegmenterPool):
            engines = [self._engine.engine(i) for i in range(self._engine.size)]
        if self._planned is None:
            self._planned = {tuple(s) for s in engines[0].options.shapes}
        if size in self._planned:
            return
        for engine in engines:
            learned = engine.stats()["learned_shapes"]
            for height, width in learned:
                if (height, width) not in self._planned:
                    self._planned.add((height, width))
                    log.info(
                        "ifa_rt: input size %dx%d came repeatedly unplanned: it is planned now "
                        "(learned %d of learn_shapes=%d; pass it in shapes= to plan it ahead)",
                        height,
                        width,
                        len(learned),
                        engine.options.learn_shapes,
                    )

    def _served_by(self, current_calls: int) -> dict[str, int]:
        """Calls per engine label, swapped-out engines included."""
        served: dict[str, int] = {}
        for label, calls in self._history:
            served[label] = served.get(label, 0) + calls
        label = engine_label(self._engine)
        served[label] = served.get(label, 0) + int(current_calls)
        return served

    def _choice_report(self) -> dict[str, Any]:
        """plan["choice"]: what `ifa_rt.runtime.prepare.choose` decided, and the tier-up's state."""
        if self._choice is None:  # precision int8 or a runtime asked for by name
            runtime, precision = engine_label(self._engine).split()
            return {"precision": precision, "runtime": runtime, "asked": True}
        report = self._choice.report()
        report["tier_up"] = self._tier.report() if self._tier is not None else None
        return report

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a background tier-up has ended (swapped in or given up); True when no
        tier-up is pending any more."""
        return self._tier is None or self._tier.wait(timeout)


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
        command = compile_command(
            self._path, self._choice.precision, plan_args(self._settings), nice=10
        )
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
        run_compile(command, env)

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
