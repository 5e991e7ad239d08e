"""`Segmenter`: the C++ runtime (`ifa_rt._core`) behind a numpy/PIL/torch-friendly call.

    seg = ifa_rt.Segmenter("camvid", shapes=[(360, 480)], max_batch=4)
    labels = seg(image)            # H×W×3 uint8 -> H×W uint8
    labels = seg(batch)            # B×H×W×3     -> B×H×W
    labels = seg([img_a, img_b])   # any sizes   -> list of H×W

Inputs are not copied where the layout allows: a numpy array (any non-negative strides), a
CPU torch tensor or a host DLPack array is handed to C++ as a view; PIL images are converted
once; a file path (str or pathlib.Path) is decoded with Pillow. RGBA drops its alpha and
grayscale (H×W, H×W×1, B×H×W×1) is replicated to RGB, both as views (the rule and its
limits: `ifa_rt.runtime.inputs`). On a CUDA engine, a CUDA torch tensor (or any DLPack array in CUDA
memory: CuPy, JAX, ...) stays on the device: the labels come back as a CUDA torch tensor,
computed in order on torch's current stream without a host round trip (`torch.from_dlpack`
shares them onward).
The GIL is released while the engine runs, so threads can share a Segmenter (calls are
serialised) or use a `SegmenterPool` (N engines) for throughput. Option defaults live once,
in C++ (`ifa_rt::Options`); errors: TypeError for wrong Python types, ValueError for bad
values, RuntimeError for runtime failures.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from .batcher import batcher_options
from .extension import core as _core
from .inputs import as_array as _as_array
from .inputs import cuda_tensor as _cuda_tensor
from .inputs import type_name as _type_name
from .options import resolve_options
from .tier_up import Tiered

__all__ = ["Segmenter", "SegmenterPool"]


class _Runner(Tiered):
    """Shared call logic over an engine (`_core.Segmenter`) or pool (`_core.SegmenterPool`)."""

    _num_classes: int
    _device: str

    def __call__(self, images: Any) -> Any:
        """Labels (uint8) of one image (H×W×3, PIL, file path), a batch B×H×W×3, or a list."""
        return self.segment(images)

    def segment(self, images: Any) -> Any:
        """Same as calling the segmenter."""
        where = "Segmenter.segment"
        if self._device != "cpu":
            device_labels = self._on_device(images, where, "labels")
            if device_labels is not None:
                return device_labels
        if isinstance(images, (list, tuple)):
            arrays = [
                _as_array(x, where, f"images[{i}]", batch=False) for i, x in enumerate(images)
            ]
            # One image each: another rank gets an empty array, and C++ names the error.
            shape = self._engine.output_shape
            outs = [np.empty(shape(a.shape) if a.ndim == 3 else (0,), np.uint8) for a in arrays]
            self._engine.segment_list(arrays, outs)
            for a in arrays:
                self._note_size(a.shape)
            return outs
        array = _as_array(images, where, "images")
        if self._tier is not None:
            self._tier.offer(array)
        out = self._engine.segment(array)
        self._note_size(array.shape)
        return out

    def logits(self, images: Any) -> Any:
        """float32 logits C×H×W (one image), B×C×H×W (batch) or a list of C×H×W."""
        where = "Segmenter.logits"
        if self._device != "cpu":
            device_logits = self._on_device(images, where, "logits")
            if device_logits is not None:
                return device_logits
        if isinstance(images, (list, tuple)):
            return [
                self._logits_one(_as_array(x, where, f"images[{i}]", batch=False))
                for i, x in enumerate(images)
            ]
        return self._logits_one(_as_array(images, where, "images"))

    def _logits_one(self, array: np.ndarray) -> np.ndarray:
        out = self._engine.logits(array)
        self._note_size(array.shape)
        return out

    def _on_device(self, images: Any, where: str, what: str) -> Any:
        """Labels/logits of CUDA-memory input as CUDA tensors (None: the input is on the host)."""
        if isinstance(images, (list, tuple)):
            tensors = [_cuda_tensor(x, where, f"images[{i}]") for i, x in enumerate(images)]
            if all(t is None for t in tensors):
                return None
            if any(t is None for t in tensors):
                raise ValueError(
                    f"{where}: input 'images': expected every image in host memory or every "
                    "image in CUDA memory, got a mix"
                )
            return [self._device_call(t, what) for t in tensors]
        tensor = _cuda_tensor(images, where, "images")
        return None if tensor is None else self._device_call(tensor, what)

    def _device_call(self, images: Any, what: str) -> Any:
        import torch

        dtype = torch.uint8 if what == "labels" else torch.float32
        shape = self._engine.output_shape(list(images.shape), what == "logits")
        out = torch.empty(shape, dtype=dtype, device=images.device)
        view = _core.DeviceArray(
            images.data_ptr(), list(images.shape), list(images.stride()), "uint8"
        )
        stream = torch.cuda.current_stream(images.device).cuda_stream
        call = self._engine.segment_device if what == "labels" else self._engine.logits_device
        call(view, out.data_ptr(), out.numel(), stream)
        return out

    def submit(self, image: Any, copy: bool = True) -> Future:
        """Queue one H×W×3 image for dynamic micro-batching; a Future of its H×W labels.

        Concurrent submits of the same size run as one batched call (`ifa_rt.runtime.batcher`). The
        image is copied unless `copy=False` (then keep the buffer unchanged until done).
        """
        while True:
            batcher = self.batcher
            future = batcher.submit(image, copy=copy)
            self._note_size(getattr(image, "shape", ()))
            # A tier-up swap closes the old batcher: a submit that raced it goes to the new one.
            if not (
                future.done() and batcher.closed and batcher is not self.__dict__.get("_batcher")
            ):
                return future

    @property
    def batcher(self) -> Any:
        """The `ifa_rt.runtime.batcher.Batcher` behind `submit` (made on first use)."""
        from .batcher import runner_batcher

        return runner_batcher(self)


class Segmenter(_Runner):
    """A planned, warmed-up C++ engine for one artifact.

    Args:
        model: an artifact path (`.ifa.pt`, or an AOTInductor package `.pt2`) or a bundled
            model name (see `ifa_rt.bundled_models()`).
        options: an `ifa_rt.Options` (None: the defaults); keyword arguments below override
            its fields. Every field is typed, defaulted and validated once, in C++
            (`ifa_rt::Options`): TypeError for a wrong type, ValueError for a bad value.
        device: "cpu", "cuda" or "cuda:N".
        precision: "fp32", "fp16" or "bf16" (the graph computes in the dtype of `mean`);
            "int8": the artifact's int8 calibration compiled for this CPU (needs VNNI and
            `shapes`; cached); "auto" (default): the fastest that passed its accuracy gate and
            that this hardware runs natively, with why the others were skipped
            (`plan["choice"]`; decided in `ifa_rt.runtime.prepare`). It decides
            `options.precision`.
        max_batch: most images per call run together (and per `submit` batch); bigger inputs
            are split. With batch_invariant=False: buckets 1, 2, 4, .., max_batch; a remainder
            runs as planned smaller batches on CPU (5 = 4 + 1) and is padded up to the next
            planned batch size on CUDA.
        shapes: (height, width) input sizes to plan for; other sizes are served on a slower
            fallback path (counted in `stats()`), or rejected when `strict`.
        strict: raise ValueError for an unplanned input size.
        threads: intra-op threads used inside each call (None: torch's setting).
        runtime: "auto" (default): the compiled AOTInductor package on the CPU when `shapes`
            are planned, in the precision chosen (from the cache, else TorchScript serves
            while it compiles in the background: `wait_ready`), else TorchScript; "jit",
            "static": TorchScript only;
            "aoti": compile before returning (cached; needs `shapes`). A `.pt2` package always
            runs on its compiled models.
        shape_cache: unplanned input sizes whose per-shape constants stay cached (an LRU, default
            4); planned sizes always stay. Bounds memory whatever sizes are served.
        learn_shapes: unplanned sizes that get planned buckets once met 3 times (default 4;
            0: none), logged on the "ifa_rt" logger and listed in `stats()["learned_shapes"]`.
            A compiled package plans them on its TorchScript fallback; CUDA does not learn.
        trim_heap_mb: MiB resident memory may grow through unplanned runs before free heap
            memory goes back to the system (default 128; 0: never), so serving many sizes
            keeps RSS bounded (`stats()["heap_trims"]`; `ifa_rt::Options::trim_heap_mb`).
        mmap_threshold_kb: fix glibc's mmap threshold at this many KiB (default 0: leave the
            allocator alone). PROCESS-WIDE. Another way to bound RSS over many sizes, measured
            slower than `trim_heap_mb` (docs/reliability.md); `ifa_rt::Options`.
        plan_logits, optimize, channels_last, warmup, tf32, fuser: see `ifa_rt::Options`.
        max_delay_us: how long `submit` lets the oldest request wait for others of its size
            (microseconds; default 0: batch only what is queued). See `ifa_rt.runtime.batcher`.
        batch_invariant: True (default): every image of a batch runs on the batch-1 plan, so
            its labels never depend on what it was batched with, in any precision, on any
            CPU. False: batched buckets (more images/s for int8, ~1.2x at batch 4; labels may
            differ on a fraction of a percent of pixels between batch sizes on AMX CPUs).
    """

    def __init__(
        self,
        model: str | os.PathLike,
        options: _core.Options | None = None,
        *,
        precision: str = "auto",
        max_delay_us: int | None = None,
        **overrides: Any,
    ) -> None:
        where = "Segmenter"
        t0 = time.perf_counter()
        self._max_delay_us = batcher_options(max_delay_us=max_delay_us).max_delay_us
        typed = resolve_options(where, options, overrides)

        def make(path: str | os.PathLike, chosen: _core.Options) -> _core.Segmenter:
            return _core.Segmenter(str(path), chosen)

        start_tier = self._start(model, where, typed, precision, make)
        self._device = self._engine.options.device
        self._metadata = json.loads(self._engine.metadata_json)
        self._num_classes = int(self._engine.num_classes)
        self._construction_ms = (time.perf_counter() - t0) * 1e3
        start_tier()

    @property
    def plan(self) -> dict[str, Any]:
        """Every preallocated buffer with its bytes, the buckets, the engine serving now,
        `arena` (CPU: the bytes and blocks every bucket shares, and `peak_live_bytes`, the most
        one planned call had alive), and `choice`: the precision and runtime chosen, what was
        skipped and why, the tier-up."""
        plan = self._engine.plan()
        plan["choice"] = self._choice_report()
        return plan

    def stats(self) -> dict[str, Any]:
        """Calls, images, per-bucket latency, fallback runs, allocations after warm-up (of the
        engine serving now); `engine` and `served_by` (calls per engine, tier-up included);
        `construction_ms` is the whole construction, compile included.

        Calls on CUDA tensors are counted but not timed: they return once queued (time them
        with CUDA events on your stream).
        """
        stats = self._engine.stats()
        stats["engine_construction_ms"] = stats["construction_ms"]
        stats["construction_ms"] = self._construction_ms
        stats["engine"] = self.engine
        stats["served_by"] = self._served_by(stats["calls"])
        return stats

    @property
    def metadata(self) -> dict[str, Any]:
        """The artifact's metadata (`ifa_rt.json`)."""
        return self._metadata

    @property
    def classes(self) -> list[str]:
        return list(self._metadata["classes"])

    @property
    def palette(self) -> list[list[int]]:
        return [list(c) for c in self._metadata["palette"]]

    @property
    def options(self) -> _core.Options:
        """The options after resolution (runtime "auto" becomes the one chosen)."""
        return self._engine.options

    @property
    def path(self) -> str:
        return self._engine.path

    def __repr__(self) -> str:
        plan = self.plan
        buckets = ", ".join(f"{b}x{h}x{w}" for b, h, w in plan["buckets"]) or "none"
        return (
            f"Segmenter('{self._metadata.get('preset') or self.path}', device='{plan['device']}', "
            f"precision='{plan['precision']}', runtime='{plan['runtime']}', "
            f"classes={self._num_classes}, buckets=[{buckets}], "
            f"plan={plan['total_bytes'] / 2**20:.1f} MiB)"
        )


class SegmenterPool(_Runner):
    """`size` independent engines on one artifact; each call runs on an idle one.

    Calls release the GIL, so `map` (or your own threads) keeps all engines busy.
    Takes the same options and keyword arguments as `Segmenter`.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        size: int = 2,
        options: _core.Options | None = None,
        *,
        precision: str = "auto",
        max_delay_us: int | None = None,
        **overrides: Any,
    ) -> None:
        where = "SegmenterPool"
        self._max_delay_us = batcher_options(max_delay_us=max_delay_us).max_delay_us
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise TypeError(f"{where}: 'size': expected an int, got {_type_name(size)}")
        typed = resolve_options(where, options, overrides)

        def make(path: str | os.PathLike, chosen: _core.Options) -> _core.SegmenterPool:
            return _core.SegmenterPool(str(path), chosen, int(size))

        start_tier = self._start(model, where, typed, precision, make)
        self._device = self._engine.engine(0).options.device
        self._metadata = json.loads(self._engine.engine(0).metadata_json)
        self._num_classes = int(self._engine.engine(0).num_classes)
        start_tier()

    @property
    def plan(self) -> dict[str, Any]:
        """The plan of one engine (all are alike) with `choice` (see `Segmenter.plan`)."""
        plan = self._engine.engine(0).plan()
        plan["choice"] = self._choice_report()
        return plan

    @property
    def size(self) -> int:
        return int(self._engine.size)

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    def stats(self) -> list[dict[str, Any]]:
        """Per-engine stats."""
        return [self._engine.engine(i).stats() for i in range(self.size)]

    def map(self, images: Sequence[Any], workers: int | None = None) -> list[np.ndarray]:
        """Segment each item of `images` (an image or a batch) on the pool; keeps order."""
        with ThreadPoolExecutor(max_workers=workers or self.size) as ex:
            return list(ex.map(self.segment, images))

    def __repr__(self) -> str:
        return (
            f"SegmenterPool('{self._metadata.get('preset')}', size={self.size}, "
            f"plan={self._engine.engine(0).plan()['total_bytes'] / 2**20:.1f} MiB each)"
        )
