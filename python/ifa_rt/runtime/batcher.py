"""Dynamic micro-batching: `submit(image)` returns a Future; concurrent submits share a call.

    seg = ifa_rt.Segmenter("camvid", shapes=[(360, 480)], max_batch=4, max_delay_us=2000)
    futures = [seg.submit(im) for im in images]      # from any threads
    labels = [f.result() for f in futures]

The work is done by the C++ `ifa_rt::Batcher` (cpp/include/ifa_rt/batcher.h): a worker thread
per engine takes the oldest request, waits up to `max_delay_us` for more of the same size (up
to `max_batch`), runs them as one batched call with the GIL released, and completes the
futures in order. An error reaches only the future of the request that caused it. Batchers
still open at interpreter exit are closed first (queued requests cancelled), so exit never
waits on a worker that needs the GIL.
"""

from __future__ import annotations

import atexit
import functools
import threading
import weakref
from concurrent.futures import CancelledError, Future, InvalidStateError
from typing import Any

import numpy as np

from .extension import core as _core
from .inputs import as_array as _as_array
from .inputs import type_name as _type_name

__all__ = ["Batcher"]

_live: weakref.WeakSet[Batcher] = weakref.WeakSet()
_lazy_lock = threading.Lock()


def batcher_options(max_batch: Any = None, max_delay_us: Any = None) -> _core.BatcherOptions:
    """Validated `ifa_rt::BatcherOptions` (None keeps the C++ default): TypeError for a wrong
    type, ValueError for a bad value, named by the C++ side."""
    return _core.BatcherOptions(max_batch=max_batch, max_delay_us=max_delay_us)


def _complete(future: Future, out: np.ndarray, error: BaseException | None) -> None:
    """Called by a C++ worker (GIL held) when a request is done: resolve its Future."""
    try:
        if error is None:
            future.set_result(out)
        elif isinstance(error, CancelledError):
            future.cancel()  # result() then raises CancelledError
        else:
            future.set_exception(error)
    except InvalidStateError:
        pass  # the caller cancelled the Future itself; its result is dropped


class Batcher:
    """Gathers concurrent `submit(image)` calls on a Segmenter or SegmenterPool into batches.

    Args:
        runner: an `ifa_rt.Segmenter` (one worker) or `ifa_rt.SegmenterPool` (one per engine).
        max_delay_us: how long the oldest request may wait for others of its size, in
            microseconds. 0 (the default, as in Triton) batches only what is already queued:
            no added latency when idle; batches still form while the engine is busy.
        max_batch: most requests per batch; None: the engine's `max_batch`.
    """

    def __init__(self, runner: Any, max_delay_us: int | None = None, max_batch: int | None = None):
        where = "Batcher"
        engine = getattr(runner, "_engine", None)
        if not isinstance(engine, (_core.Segmenter, _core.SegmenterPool)):
            raise TypeError(
                f"{where}: 'runner': expected an ifa_rt.Segmenter or SegmenterPool, "
                f"got {_type_name(runner)}"
            )
        self._core = _core.Batcher(engine, batcher_options(max_batch, max_delay_us))
        self._output_shape = engine.output_shape
        _live.add(self)

    def submit(self, image: Any, copy: bool = True) -> Future:
        """Queue one H×W×3 uint8 image; returns a Future of its H×W uint8 labels.

        The image is copied (one memcpy) so the caller may reuse its buffer at once, e.g. the
        frame buffer of a video loop; `copy=False` queues a view instead, and then the buffer
        must stay unchanged until the Future is done. Every error (bad input, engine failure,
        closed batcher) arrives through the Future: ValueError, RuntimeError, or
        CancelledError when `close(drain=False)` dropped it. Cancelling the Future does not
        stop the request; its result is dropped.
        """
        future: Future = Future()
        try:
            array = _as_array(image, "Batcher.submit", "image")
            if copy:
                array = np.array(array, copy=True, order="C")
            # The labels are written here by the worker, so the result needs no copy.
            # One image a request: another rank gets an empty array, and C++ names the error.
            out = np.empty(self._output_shape(array.shape) if array.ndim == 3 else (0,), np.uint8)
            self._core.submit(array, out, functools.partial(_complete, future, out))
        except (TypeError, ValueError, RuntimeError) as exc:
            future.set_exception(exc)
        return future

    def map(self, images: Any, timeout: float | None = None) -> list[np.ndarray]:
        """Submit every image, then wait for all; labels in input order."""
        futures = [self.submit(im) for im in images]
        return [f.result(timeout) for f in futures]

    def stats(self) -> dict[str, Any]:
        """Counters: requests, completed, failed, cancelled, batches, mean_batch_size, ..."""
        return self._core.stats()

    @property
    def max_batch(self) -> int:
        """Most requests per batch."""
        return int(self._core.max_batch)

    @property
    def max_delay_us(self) -> int:
        """Longest wait of the oldest request for company, in microseconds."""
        return int(self._core.max_delay_us)

    @property
    def closed(self) -> bool:
        """True once `close` has begun."""
        return bool(self._core.closed)

    def close(self, drain: bool = True) -> None:
        """Stop accepting; run queued requests (drain) or cancel them; join the workers."""
        self._core.close(bool(drain))

    def __enter__(self) -> Batcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"Batcher(max_batch={self.max_batch}, max_delay_us={self.max_delay_us}, "
            f"batches={s['batches']}, mean_batch_size={s['mean_batch_size']:.2f}"
            f"{', closed' if self.closed else ''})"
        )


def runner_batcher(runner: Any) -> Batcher:
    """The Batcher behind `runner.submit`, made on first use with the runner's max_delay_us."""
    batcher = runner.__dict__.get("_batcher")
    if batcher is None:
        with _lazy_lock:  # two threads' first submits must share one batcher
            batcher = runner.__dict__.get("_batcher")
            if batcher is None:
                batcher = Batcher(runner, max_delay_us=getattr(runner, "_max_delay_us", None))
                runner._batcher = batcher
    return batcher


@atexit.register
def _close_all() -> None:
    """Cancel what is still queued and join every worker before the interpreter finalizes.

    A worker completing a request needs the GIL; during finalization it could not get it.
    A Batcher dropped in one of its own done-callbacks is already gone from `_live`, but its
    worker may still be finishing: wait for it too (bounded).
    """
    for batcher in list(_live):
        batcher.close(drain=False)
    _core.wait_for_batcher_workers(10.0)
