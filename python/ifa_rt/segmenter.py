"""`Segmenter`: the C++ runtime (`ifa_rt._core`) behind a numpy/PIL/torch-friendly call.

    seg = ifa_rt.Segmenter("camvid", shapes=[(360, 480)], max_batch=4)
    labels = seg(image)            # H×W×3 uint8 -> H×W uint8
    labels = seg(batch)            # B×H×W×3     -> B×H×W
    labels = seg([img_a, img_b])   # any sizes   -> list of H×W

Inputs are not copied where the layout allows: a numpy array (any non-negative strides), a
CPU torch tensor or a host DLPack array is handed to C++ as a view; PIL images are converted
once. On a CUDA engine, a CUDA torch tensor (or any DLPack array in CUDA memory: CuPy, JAX,
...) stays on the device: the labels come back as a CUDA torch tensor, computed in order on
torch's current stream without a host round trip (`torch.from_dlpack` shares them onward).
The GIL is released while the engine runs, so threads can share a Segmenter (calls are
serialised) or use a `SegmenterPool` (N engines) for throughput. Option defaults live once,
in C++ (`ifa_rt::Options`); errors: TypeError for wrong Python types, ValueError for bad
values, RuntimeError for runtime failures.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from . import _core
from .bundled import resolve
from .inputs import as_array as _as_array
from .inputs import cuda_tensor as _cuda_tensor
from .inputs import type_name as _type_name

__all__ = ["Segmenter", "SegmenterPool"]

_D = _core.Options()  # the C++ defaults, declared once there


def _artifact(model: str | os.PathLike, where: str, kwargs: dict[str, Any]) -> str:
    """The file the engine loads: the artifact, or its package compiled for this machine.

    A TorchScript artifact with runtime="aoti" (or precision="int8", from the int8 recipe
    beside it) is compiled on first use and cached (`ifa_rt.deploy.aoti.compile_artifact`,
    `ifa_rt.deploy.int8_recipe.compile_int8`; progress shown); a `.pt2` is used as is.
    """
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
    _shapes(shapes, where)  # type errors first, before a long compile
    plan = {
        "shapes": [(int(h), int(w)) for h, w in shapes],
        "max_batch": int(kwargs.get("max_batch") or _D.max_batch),
        "threads": kwargs.get("threads"),
    }
    if int8:
        from .deploy.int8_recipe import compile_int8

        return str(compile_int8(path, recipe, **plan))
    from .deploy.aoti import compile_artifact

    return str(compile_artifact(path, **plan))


def _options(where: str, **kwargs: Any) -> _core.Options:
    """C++ Options from keyword arguments; None keeps the C++ default."""
    values: dict[str, str] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key == "shapes":
            values[key] = _shapes(value, where)
        elif key in ("max_batch", "threads", "warmup", "shape_cache"):
            # Before the bool branch: True is an int to Python but not a count.
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{where}: '{key}': expected an int, got {_type_name(value)}")
            values[key] = str(int(value))
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, str):
            values[key] = value
        else:
            raise TypeError(f"{where}: '{key}': expected a str, got {_type_name(value)}")
    return _core.Options.from_map(values)


def _shapes(shapes: Any, where: str) -> str:
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence):
        raise TypeError(
            f"{where}: 'shapes': expected a list of (height, width) pairs, got {_type_name(shapes)}"
        )
    items = []
    for s in shapes:
        if (
            not isinstance(s, Sequence)
            or len(s) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in s)
        ):
            raise TypeError(
                f"{where}: 'shapes': expected a list of (height, width) int pairs, got {s!r}"
            )
        items.append(f"{int(s[0])}x{int(s[1])}")
    return ",".join(items)


class _Runner:
    """Shared call logic over an engine (`_core.Segmenter`) or pool (`_core.SegmenterPool`)."""

    _engine: Any
    _num_classes: int
    _device: str

    def __call__(self, images: Any) -> Any:
        """Labels (uint8) of one image H×W×3, a batch B×H×W×3, or a list of images."""
        return self.segment(images)

    def segment(self, images: Any) -> Any:
        """Same as calling the segmenter."""
        where = "Segmenter.segment"
        if self._device != "cpu":
            device_labels = self._on_device(images, where, "labels")
            if device_labels is not None:
                return device_labels
        if isinstance(images, (list, tuple)):
            arrays = [_as_array(x, where, f"images[{i}]") for i, x in enumerate(images)]
            outs = [np.empty(a.shape[:2] if a.ndim == 3 else (0,), np.uint8) for a in arrays]
            self._engine.segment_list(arrays, outs)
            return outs
        array = _as_array(images, where, "images")
        out = np.empty(self._out_shape(array.shape, "labels"), np.uint8)
        self._engine.segment_into(array, out)
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
                self._logits_one(_as_array(x, where, f"images[{i}]")) for i, x in enumerate(images)
            ]
        return self._logits_one(_as_array(images, where, "images"))

    def _out_shape(self, shape: Sequence[int], what: str) -> tuple[int, ...]:
        """The result's shape for an input [H,W,3] / [B,H,W,3]: labels drop the channels,
        logits put the classes before H, W; (0,) for another rank (the engine names it)."""
        if len(shape) not in (3, 4):
            return (0,)
        if what == "labels":
            return tuple(shape[:-1])
        return (*shape[:-3], self._num_classes, *shape[-3:-1])

    def _logits_one(self, array: np.ndarray) -> np.ndarray:
        out = np.empty(self._out_shape(array.shape, "logits"), np.float32)
        self._engine.logits_into(array, out)
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
        out = torch.empty(self._out_shape(images.shape, what), dtype=dtype, device=images.device)
        view = _core.DeviceArray(
            images.data_ptr(), list(images.shape), list(images.stride()), "uint8"
        )
        stream = torch.cuda.current_stream(images.device).cuda_stream
        call = self._engine.segment_device if what == "labels" else self._engine.logits_device
        call(view, out.data_ptr(), out.numel(), stream)
        return out

    def submit(self, image: Any, copy: bool = True) -> Future:
        """Queue one H×W×3 image for dynamic micro-batching; a Future of its H×W labels.

        Concurrent submits of the same size run as one batched call (`ifa_rt.batcher`). The
        image is copied unless `copy=False` (then keep the buffer unchanged until done).
        """
        return self.batcher.submit(image, copy=copy)

    @property
    def batcher(self) -> Any:
        """The `ifa_rt.batcher.Batcher` behind `submit` (made on first use): stats, close."""
        from .batcher import runner_batcher

        return runner_batcher(self)


class Segmenter(_Runner):
    """A planned, warmed-up C++ engine for one artifact.

    Args:
        model: an artifact path (`.ifa.pt`, or an AOTInductor package `.pt2`) or a bundled
            model name (see `ifa_rt.bundled_models()`).
        device: "cpu", "cuda" or "cuda:N".
        precision: "fp32", "fp16" or "bf16" (the graph computes in the dtype of `mean`);
            "int8": the artifact's int8 recipe compiled for this CPU (needs VNNI and `shapes`;
            cached); "auto": the fastest of those that passed their accuracy gate here,
            measured at construction (`plan["precision_probe"]`). See `ifa_rt.precision`.
        max_batch: largest batch run at once; bigger inputs are split. A remainder runs as
            planned smaller batches on CPU (5 = 4 + 1) and is padded up to the next planned
            batch size (1, 2, 4, .., max_batch) on CUDA.
        shapes: (height, width) input sizes to plan for; other sizes are served on a slower
            fallback path (counted in `stats()`), or rejected when `strict`.
        strict: raise ValueError for an unplanned input size.
        threads: intra-op threads used inside each call (None: torch's setting).
        runtime: "auto" (default), "jit", "static", or "aoti": compile the artifact for this
            machine with AOTInductor on first use (cached; needs `shapes`), the fastest CPU
            path. A `.pt2` package always runs on its compiled models.
        shape_cache: unplanned input sizes whose per-shape constants stay cached (an LRU, default
            4); planned sizes always stay. Bounds memory whatever sizes are served.
        plan_logits, optimize, channels_last, warmup, tf32: see `ifa_rt::Options`.
        max_delay_us: how long `submit` lets the oldest request wait for others of its size
            (microseconds; default 0: batch only what is queued). See `ifa_rt.batcher`.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        device: str = _D.device,
        precision: str = _D.precision,
        max_batch: int = _D.max_batch,
        shapes: Sequence[tuple[int, int]] | None = None,
        strict: bool = _D.strict,
        threads: int | None = None,
        *,
        plan_logits: bool | None = None,
        runtime: str | None = None,
        optimize: bool | None = None,
        channels_last: bool | None = None,
        warmup: int | None = None,
        shape_cache: int | None = None,
        max_delay_us: int | None = None,
        tf32: bool | None = None,
    ) -> None:
        where = "Segmenter"
        from .batcher import check_max_delay_us

        self._max_delay_us = check_max_delay_us(max_delay_us, where)
        settings = dict(
            device=device,
            precision=precision,
            max_batch=max_batch,
            shapes=shapes,
            strict=strict,
            threads=threads,
            plan_logits=plan_logits,
            runtime=runtime,
            optimize=optimize,
            channels_last=channels_last,
            warmup=warmup,
            shape_cache=shape_cache,
            tf32=tf32,
        )
        self._precision_probe: dict[str, Any] | None = None
        if precision == "auto":
            from .precision import choose_precision

            def build(name: str) -> _core.Segmenter:
                chosen = dict(settings, precision=name)
                return _core.Segmenter(_artifact(model, where, chosen), _options(where, **chosen))

            self._engine, self._precision_probe = choose_precision(
                resolve(model, where), settings, build
            )
        else:
            path = _artifact(model, where, settings)
            self._engine = _core.Segmenter(path, _options(where, **settings))
        self._device = self._engine.options.device
        self._metadata = json.loads(self._engine.metadata_json)
        self._num_classes = int(self._engine.num_classes)

    @property
    def plan(self) -> dict[str, Any]:
        """Every preallocated buffer with its bytes, the buckets and the runtime chosen (and,
        for precision="auto", the probe that chose the precision)."""
        plan = self._engine.plan()
        if self._precision_probe is not None:
            plan["precision_probe"] = self._precision_probe
        return plan

    def stats(self) -> dict[str, Any]:
        """Calls, images, per-bucket latency, fallback runs, allocations after warm-up.

        Calls on CUDA tensors are counted but not timed: they return once queued (time them
        with CUDA events on your stream).
        """
        return self._engine.stats()

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
    Takes the same keyword arguments as `Segmenter`.
    """

    def __init__(self, model: str | os.PathLike, size: int = 2, **kwargs: Any) -> None:
        where = "SegmenterPool"
        from .batcher import check_max_delay_us

        self._max_delay_us = check_max_delay_us(kwargs.pop("max_delay_us", None), where)
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool):
            raise TypeError(f"{where}: 'size': expected an int, got {_type_name(size)}")
        path = _artifact(model, where, kwargs)
        self._engine = _core.SegmenterPool(path, _options(where, **kwargs), int(size))
        self._device = self._engine.engine(0).options.device
        self._metadata = json.loads(self._engine.engine(0).metadata_json)
        self._num_classes = int(self._engine.engine(0).num_classes)

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
