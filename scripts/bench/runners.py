"""One runner per way to run the model, all with one contract: uint8 [B,H,W,3] numpy images in,
uint8 [B,H,W] numpy labels out, fp32, intra-op threads = T.

A runner is built once per input shape (for batches up to max_batch) and does all of its set-up
(export, compile, plan) in the constructor or its first calls, which the measurement excludes.
Every runner copies the labels out into a fresh array, as the Segmenter does, so none is
timed without its output copy.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from source import ModelSource

__all__ = ["VARIANTS", "Runner", "SkipVariant", "make_runner"]

# Table and plot order: the reference, the project's runtime in its two engines, then peers.
VARIANTS = (
    "eager",
    "segmenter",
    "segmenter_aoti",
    "segmenter_int8",
    "segmenter_bf16",
    "torch_compile",
    "onnxruntime",
    "openvino",
    "openvino_default",
)


class SkipVariant(Exception):
    """A variant that cannot run here (a missing package or API); recorded with its reason."""


class Runner:
    """Base class: `info` describes the configuration actually used, for the JSON result."""

    name = ""
    info: dict[str, Any]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels uint8 [B,H,W] for images uint8 [B,H,W,3]."""
        raise NotImplementedError


class EagerRunner(Runner):
    """The reference model in eager PyTorch: `ImageSegmenter(model, mean, std)`."""

    name = "eager"

    def __init__(self, source: ModelSource) -> None:
        from ifa_rt.deploy.export import ImageSegmenter

        self.module = ImageSegmenter(source.model(), *source.mean_std()).eval()
        self.info = {"form": "reference", "mode": "torch.inference_mode"}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the eager module."""
        with torch.inference_mode():
            return self.module(torch.from_numpy(images)).numpy()


class SegmenterRunner(Runner):
    """`ifa_rt.Segmenter` on the TorchScript artifact, planned for one shape and max_batch."""

    name = "segmenter"

    def __init__(
        self,
        path: Path,
        shape: tuple[int, int],
        max_batch: int,
        threads: int,
        precision: str = "fp32",
    ) -> None:
        from ifa_rt import Segmenter

        self.seg = Segmenter(
            str(path), threads=threads, shapes=[shape], max_batch=max_batch, precision=precision
        )
        stats = self.seg.stats()
        self.info = {
            "artifact": path.name,
            "runtime": self.seg.plan.get("runtime"),
            "construction_ms": stats.get("construction_ms"),
            "warmup_first_call_ms": stats.get("first_call_ms"),
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the C++ engine (it copies them out of its planned buffer)."""
        return self.seg(images)


class SegmenterBf16Runner(SegmenterRunner):
    """The same Segmenter computing in bf16 (reduced precision, reported apart from fp32)."""

    name = "segmenter_bf16"

    def __init__(self, path: Path, shape: tuple[int, int], max_batch: int, threads: int) -> None:
        super().__init__(path, shape, max_batch, threads, precision="bf16")


class SegmenterAotiRunner(SegmenterRunner):
    """The same Segmenter on an AOTInductor package (`ifa_rt.export(..., format="aoti")`)."""

    name = "segmenter_aoti"

    def __init__(
        self, source: ModelSource, shape: tuple[int, int], max_batch: int, threads: int
    ) -> None:
        try:
            t0 = time.perf_counter()
            path = source.aoti(shape, max_batch, threads)
            export_s = time.perf_counter() - t0
            super().__init__(path, shape, max_batch, threads)
        except (NotImplementedError, TypeError) as exc:
            # An ifa_rt without the AOTI path (export(format=...) unknown) is a skip, not a bug.
            raise SkipVariant(f"AOTI path unavailable: {type(exc).__name__}: {exc}") from exc
        self.info["export_s"] = export_s  # AOT compilation of every bucket, on this machine


class SegmenterInt8Runner(SegmenterRunner):
    """The same Segmenter on an int8 package (`ifa_rt.quantize`): reduced precision, reported
    apart from the fp32 goal, with the gate's label agreement in `info`."""

    name = "segmenter_int8"

    def __init__(
        self, source: ModelSource, shape: tuple[int, int], max_batch: int, threads: int
    ) -> None:
        from ifa_rt.deploy.quantize import cpu_has_vnni

        if not cpu_has_vnni():
            raise SkipVariant("int8 needs a CPU with VNNI")
        path, quantization = source.int8(shape, max_batch, threads)
        super().__init__(path, shape, max_batch, threads)
        gate = quantization["gate"]
        self.info["int8"] = {
            "fp32_modules": quantization["fp32_modules"],
            "gate_label_agreement": gate["label_agreement"],
        }


class TorchCompileRunner(Runner):
    """torch.compile (inductor, freezing) of `ImageSegmenter(fuse_model(model))`, no_grad."""

    name = "torch_compile"

    def __init__(self, source: ModelSource, shape: tuple[int, int]) -> None:
        from ifa_rt.deploy.export import ImageSegmenter
        from ifa_rt.deploy.fuse import fuse_model

        module = ImageSegmenter(fuse_model(source.model()), *source.mean_std()).eval()
        with torch.no_grad():
            # Fill the fused head's per-shape geometry cache eagerly (as export_onnx does):
            # compiled on an empty cache, dynamo traces the cache fill, then recompiles on the
            # next call: twice the compile time for a graph the timed calls never run.
            module(torch.zeros(1, *shape, 3, dtype=torch.uint8))
        # One runner per shape: drop the previous shapes' compiled graphs, so they neither
        # hold memory nor count towards dynamo's recompile limit (past it, calls run eager).
        torch._dynamo.reset()
        # freezing makes the weights constants (folded, convolution weights pre-packed), as
        # measured in docs/benchmarks.md; passed as options so it applies to this compile only.
        # dynamic=False: one static graph per batch size, compiled during the warm-up, rather
        # than a slower dynamic-batch graph after the second size.
        self.fn = torch.compile(module, dynamic=False, options={"freezing": True})
        self.info = {
            "backend": "inductor",
            "options": {"freezing": True},
            "dynamic": False,
            "form": "fused",
            "mode": "torch.no_grad",
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the compiled module (compiles on the first call of each batch size)."""
        with torch.no_grad():
            return self.fn(torch.from_numpy(images)).numpy()


class OrtRunner(Runner):
    """ONNX Runtime, CPU execution provider, on the fused ONNX export."""

    name = "onnxruntime"

    def __init__(self, source: ModelSource, shape: tuple[int, int], threads: int) -> None:
        try:
            from ifa_rt.deploy.onnx_export import onnx_session

            # No spinning: idle ORT threads would busy-wait into the next variant's call.
            self.session = onnx_session(source.onnx(shape), threads=threads, spinning=False)
        except ImportError as exc:
            raise SkipVariant(f"onnxruntime is not installed ({exc})") from exc
        self.input = self.session.get_inputs()[0].name
        self.info = {
            "providers": self.session.get_providers(),
            "intra_op_threads": threads,
            "spinning": False,
            "batch_axis": "dynamic",
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the session (a fresh array each call)."""
        return self.session.run(None, {self.input: images})[0]


class OpenVinoRunner(Runner):
    """OpenVINO on the same ONNX file: CPU device, fp32, latency hint, compiled once per shape."""

    name = "openvino"

    def __init__(
        self, source: ModelSource, shape: tuple[int, int], threads: int, defaults: bool = False
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise SkipVariant(f"openvino is not installed ({exc})") from exc
        core = ov.Core()
        config: dict[str, Any] = {"INFERENCE_NUM_THREADS": threads}
        if defaults:  # what a user gets: OpenVINO picks the precision (bf16 on AMX CPUs)
            self.name = "openvino_default"
        else:
            config.update(INFERENCE_PRECISION_HINT="f32", PERFORMANCE_HINT="LATENCY")
        self.compiled = core.compile_model(core.read_model(str(source.onnx(shape))), "CPU", config)
        self.request = self.compiled.create_infer_request()
        keys = [*config, "INFERENCE_PRECISION_HINT"]
        self.info = {key: str(self.compiled.get_property(key)) for key in keys}
        self.info.update(device=core.get_property("CPU", "FULL_DEVICE_NAME"), batch_axis="dynamic")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the infer request (input shared, output copied out like the others)."""
        return self.request.infer({0: images}, share_inputs=True, share_outputs=False)[0]


def make_runner(
    name: str, source: ModelSource, shape: tuple[int, int], max_batch: int, threads: int
) -> Runner:
    """Build variant `name` for one input shape and batches up to `max_batch`."""
    if name == "eager":
        return EagerRunner(source)
    if name == "segmenter":
        return SegmenterRunner(source.artifact(), shape, max_batch, threads)
    if name == "segmenter_aoti":
        return SegmenterAotiRunner(source, shape, max_batch, threads)
    if name == "segmenter_int8":
        return SegmenterInt8Runner(source, shape, max_batch, threads)
    if name == "segmenter_bf16":
        return SegmenterBf16Runner(source.artifact(), shape, max_batch, threads)
    if name == "torch_compile":
        return TorchCompileRunner(source, shape)
    if name == "onnxruntime":
        return OrtRunner(source, shape, threads)
    if name == "openvino":
        return OpenVinoRunner(source, shape, threads)
    if name == "openvino_default":
        return OpenVinoRunner(source, shape, threads, defaults=True)
    raise ValueError(f"make_runner: 'name': expected one of {list(VARIANTS)}, got {name!r}")
