"""One runner per way to run the model, all with one contract: uint8 [B,H,W,3] numpy images in,
uint8 [B,H,W] numpy labels out, fp32, intra-op threads = T.

A runner is built once per input shape (for batches up to max_batch) and does all of its set-up
(export, compile, plan) in the constructor or its first calls, which the measurement excludes.
Every runner copies the labels out into a fresh array, as the Segmenter does, so none is
timed without its output copy.

`logits(images)` (untimed, for correctness.py) gives float32 [B,C,H,W] logits computed by the
same engine in the same precision as the timed labels; `logits_from` in `info` says how.
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

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits float32 [B,C,H,W] of the same computation as the labels (untimed)."""
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

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The eager module's fp32 logits: the reference of every correctness check."""
        with torch.inference_mode():
            return self.module.logits(torch.from_numpy(images)).numpy()


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
            "logits_from": f"Segmenter.logits (the same TorchScript engine, {precision})",
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the C++ engine (it copies them out of its planned buffer)."""
        return self.seg(images)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits from the same engine (the TorchScript artifact computes both)."""
        return self.seg.logits(images)


class PackageLogits:
    """Logits of a compiled package's bucket, loaded in Python: the package returns coarse
    logits and the runtime upsamples them (bilinear, align_corners=True, as ATen: tested in
    tests/test_aoti.py), so the same upsample here gives the logits behind its labels.
    (`Segmenter.logits` on a package runs its fp32 TorchScript fallback instead.)"""

    def __init__(self, path: Path) -> None:
        self.path, self.models = path, {}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Upsampled float32 logits [B,C,H,W] of the bucket of exactly this batch and size."""
        from torch._inductor.package import load_package

        from ifa_rt.deploy.aoti import model_name

        b, h, w = images.shape[:3]
        name = model_name(b, h, w)
        if name not in self.models:
            self.models[name] = load_package(str(self.path), name)
        with torch.no_grad():
            out = self.models[name](torch.from_numpy(images))
        out = out[0] if isinstance(out, (list, tuple)) else out
        up = torch.nn.functional.interpolate(out, size=[h, w], mode="bilinear", align_corners=True)
        return up.numpy()


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
        self.package_logits = PackageLogits(path)
        self.info["logits_from"] = "the package's bucket (fp32) + the runtime's upsample"

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The package's own logits (not the TorchScript fallback's)."""
        return self.package_logits(images)


class SegmenterInt8Runner(SegmenterRunner):
    """The same Segmenter on an int8 package (`ifa_rt.quantize`): reduced precision, reported
    apart from the fp32 goal, with the gate's label agreement in `info`."""

    name = "segmenter_int8"

    def __init__(
        self, source: ModelSource, shape: tuple[int, int], max_batch: int, threads: int
    ) -> None:
        from ifa_rt.runtime.precision import cpu_has_vnni

        if not cpu_has_vnni():
            raise SkipVariant("int8 needs a CPU with VNNI")
        path, quantization = source.int8(shape, max_batch, threads)
        super().__init__(path, shape, max_batch, threads)
        gate = quantization["gate"]
        self.info["int8"] = {
            "fp32_modules": quantization["fp32_modules"],
            "gate_label_agreement": gate["label_agreement"],
        }
        self.package_logits = PackageLogits(path)
        self.info["logits_from"] = "the package's bucket (int8) + the runtime's upsample"

    def logits(self, images: np.ndarray) -> np.ndarray:
        """The int8 package's own logits (not the fp32 TorchScript fallback's)."""
        return self.package_logits(images)


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
        self.module, self.logits_fn = module, None
        self.info = {
            "backend": "inductor",
            "options": {"freezing": True},
            "dynamic": False,
            "form": "fused",
            "mode": "torch.no_grad",
            "logits_from": "torch.compile of the same module's logits, same options",
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the compiled module (compiles on the first call of each batch size)."""
        with torch.no_grad():
            return self.fn(torch.from_numpy(images)).numpy()

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits from a second compile (same options) of the module's logits method."""
        from ifa_rt.deploy.onnx_export import _Logits

        if self.logits_fn is None:
            self.logits_fn = torch.compile(
                _Logits(self.module), dynamic=False, options={"freezing": True}
            )
        with torch.no_grad():
            return self.logits_fn(torch.from_numpy(images)).numpy()


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
        self.source, self.shape, self.threads = source, shape, threads
        self.input, self.logits_session = self.session.get_inputs()[0].name, None
        self.info = {
            "providers": self.session.get_providers(),
            "intra_op_threads": threads,
            "spinning": False,
            "batch_axis": "dynamic",
            "logits_from": "the same export with a logits output, same session options",
        }

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the session (a fresh array each call)."""
        return self.session.run(None, {self.input: images})[0]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits from a session on the logits export, with the same options."""
        from ifa_rt.deploy.onnx_export import onnx_session

        if self.logits_session is None:
            path = self.source.onnx(self.shape, output="logits")
            self.logits_session = onnx_session(path, threads=self.threads, spinning=False)
        return self.logits_session.run(None, {self.input: images})[0]


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
        self.info["logits_from"] = "the same export with a logits output, same configuration"
        self.core, self.config, self.source, self.shape = core, config, source, shape
        self.logits_request = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Labels from the infer request (input shared, output copied out like the others)."""
        return self.request.infer({0: images}, share_inputs=True, share_outputs=False)[0]

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits from the logits export compiled with the same configuration."""
        if self.logits_request is None:
            path = self.source.onnx(self.shape, output="logits")
            model = self.core.compile_model(self.core.read_model(str(path)), "CPU", self.config)
            self.logits_request = model.create_infer_request()
        return self.logits_request.infer({0: images}, share_inputs=True, share_outputs=False)[0]


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
