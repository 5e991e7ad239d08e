"""int8 post-training static quantization into an AOTInductor package, behind an accuracy gate.

Algorithm (CPU with VNNI; docs/artifact.md "int8 packages"):
  1. Rebuild the artifact's eager fused module; export it at the first planned bucket's shape
     and insert observers with torchao's PT2E x86 inductor quantizer (per-channel int8 weights,
     per-tensor uint8 activations: the oneDNN qconv kernels that VNNI runs).
  2. Calibrate on real images (resized to the planned shape), convert, and compile with
     AOTInductor + freezing: inductor lowers the quantize/dequantize pairs to fused oneDNN
     int8 convolutions. Every other bucket reuses the calibrated observer statistics (the
     graphs differ only in shape), so calibration runs once.
  3. The gate: run the int8 and fp32 models on held-out images; label agreement, mIoU of each
     against ground truth where labels are given, and per-class IoU. A model that fails the
     gate is not written unless forced. The gate goes into the package's metadata, which the
     runtime shows (`Segmenter.metadata["quantization"]`).
The package's fallback (unplanned shapes, logits) is the fp32 TorchScript artifact.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..runtime.precision import cpu_has_vnni
from ..side_files import CALIBRATION_VERSION, file_sha256
from .aoti import aot_compile, compile_package, export_graph, model_name
from .artifact import labels_from_coarse
from .gate import Gate, compare, describe
from .rebuild import rebuild_from_artifact

__all__ = [
    "GateFailed",
    "QuantizationGate",
    "quantize",
    "quantize_artifact",
    "save_calibration",
]


class GateFailed(ValueError):
    """The int8 model missed the accuracy gate; the report says by how much."""


QuantizationGate = Gate  # the name it had before bf16/fp16 were gated too


def _resized(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A writable contiguous copy of `image` at `shape` (torch wants writable arrays)."""
    if image.shape[:2] == tuple(shape):
        return np.array(image, copy=True)
    return np.array(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR))


def _resized_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if labels.shape == tuple(shape):
        return labels
    return np.asarray(Image.fromarray(labels).resize((shape[1], shape[0]), Image.NEAREST))


def unlowerable(wrapper: nn.Module) -> list[str]:
    """Modules that must stay fp32 for inductor to compile the int8 graph: a max-pool with
    ceil_mode (the ResNet stem) lowers to quantized::max_pool2d, whose output size ignores
    ceil_mode (torch 2.13: a 64x128 map pools to 32x64 instead of 33x65), so the graph fails
    to compile at the first add that meets the true size."""
    return [n for n, m in wrapper.named_modules() if isinstance(m, nn.MaxPool2d) and m.ceil_mode]


def _quantizer(keep_fp32: Sequence[str] = ()):
    """torchao's x86 inductor quantizer; modules named in `keep_fp32` stay in fp32."""
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer,
        get_default_x86_inductor_quantization_config,
    )

    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    for name in keep_fp32:
        quantizer.set_module_name_qconfig(name, None)
    return quantizer


def conv_names(wrapper: nn.Module) -> list[str]:
    """The artifact module's convolutions, first to last (definition order = run order here)."""
    return [n for n, m in wrapper.named_modules() if isinstance(m, nn.Conv2d)]


def _observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in prepared.state_dict().items() if "activation_post_process" in k}


class _Calibrated:
    """Observer statistics from one calibration pass, applied to every bucket's graph."""

    def __init__(
        self,
        wrapper: nn.Module,
        images: Sequence[np.ndarray],
        shape: tuple[int, int],
        keep_fp32: Sequence[str] = (),
    ):
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

        self.wrapper = wrapper
        self.keep_fp32 = list(keep_fp32)
        first = torch.zeros(1, *shape, 3, dtype=torch.uint8)
        fp32 = self.keep_fp32 + unlowerable(wrapper)
        prepared = prepare_pt2e(export_graph(wrapper, first), _quantizer(fp32))
        with torch.no_grad():
            for image in images:
                prepared(torch.from_numpy(_resized(image, shape))[None])
        self.state = _observer_state(prepared)
        if not self.state:
            raise RuntimeError(
                "quantize: the quantizer inserted no observers (nothing to quantize)"
            )

    @classmethod
    def from_state(
        cls, wrapper: nn.Module, state: dict[str, torch.Tensor], keep_fp32: Sequence[str]
    ) -> _Calibrated:
        """Statistics saved from an earlier calibration (`NAME.int8.pt`): no images needed."""
        self = cls.__new__(cls)
        self.wrapper, self.state, self.keep_fp32 = wrapper, dict(state), list(keep_fp32)
        return self

    def convert(self, batch: int, height: int, width: int) -> tuple[nn.Module, torch.Tensor]:
        """The int8 graph of one bucket, with the calibrated statistics."""
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        images = torch.zeros(batch, height, width, 3, dtype=torch.uint8)
        fp32 = self.keep_fp32 + unlowerable(self.wrapper)
        prepared = prepare_pt2e(export_graph(self.wrapper, images), _quantizer(fp32))
        mine = _observer_state(prepared)
        if set(mine) != set(self.state):
            raise RuntimeError(
                f"quantize: bucket {batch}x{height}x{width} has other observers than the "
                "calibrated graph"
            )
        prepared.load_state_dict(self.state, strict=False)
        return convert_pt2e(prepared), images

    def compile(self, batch: int, height: int, width: int) -> list:
        graph, images = self.convert(batch, height, width)
        return aot_compile(graph, images)


def _gate_report(
    package: Path,
    artifact: Path,
    shape: tuple[int, int],
    images: Sequence[np.ndarray],
    labels: Sequence[np.ndarray] | None,
    meta: dict[str, Any],
    gate: QuantizationGate,
) -> dict[str, Any]:
    """The gate (`deploy.gate.compare`) of the package's int8 model against the fp32
    artifact, both at the first planned shape (the images are resized to it)."""
    from torch._inductor.package import load_package

    from .artifact import load_artifact

    fp32, _ = load_artifact(artifact)
    int8 = load_package(str(package), model_name(1, *shape))

    def run(model) -> Callable[[np.ndarray], np.ndarray]:
        def predict(image: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                out = model(torch.from_numpy(image)[None])
            out = out[0] if isinstance(out, (list, tuple)) else out
            return labels_from_coarse(out, *image.shape[:2])[0].numpy()

        return predict

    report = compare(
        "int8",
        run(fp32),
        run(int8),
        [_resized(image, shape) for image in images],
        None if labels is None else [_resized_labels(t, shape) for t in labels],
        meta["classes"],
        gate,
        meta.get("ignore_index", 255),
    )
    return {**report, "shape": list(shape)}


def _simulated_agreement(
    calibrated: _Calibrated,
    shape: tuple[int, int],
    inputs: Sequence[torch.Tensor],
    fp32_labels: Sequence[torch.Tensor],
) -> float:
    """Label agreement of the converted (fake-quantized, eager) int8 graph with the fp32
    labels: cheap, close to the compiled kernels', used only to choose what stays fp32."""
    graph, _ = calibrated.convert(1, *shape)
    same = total = 0
    with torch.no_grad():
        for x, want in zip(inputs, fp32_labels, strict=True):
            same += int((labels_from_coarse(graph(x), *shape) == want).sum())
            total += want.numel()
    return same / total


def _calibrate(
    wrapper: nn.Module,
    calibration: Sequence[np.ndarray],
    shape: tuple[int, int],
    keep_fp32: Sequence[str] | str,
    gate: QuantizationGate,
    progress: Callable[[str], None] | None,
) -> _Calibrated:
    """Calibrated observers; with keep_fp32="auto", the first 0, 1, 2, 4, 8 convolutions stay
    fp32 until the simulated label agreement reaches the gate (early, high-resolution layers
    are the most sensitive; measured on camvid-lite0: 98.91 % all int8, 99.35 % with the stem
    and first block in fp32). The agreement is measured on the last quarter (at most 16) of
    the calibration images, which the observers do not see, never on the gate's images: the
    gate stays held out from every choice it judges."""
    if keep_fp32 != "auto":
        return _Calibrated(wrapper, calibration, shape, list(keep_fp32))
    held = min(16, len(calibration) // 4)
    if held == 0:
        raise ValueError(
            f"quantize: keep_fp32='auto': expected at least 4 calibration images (a quarter "
            f"chooses the fp32 layers), got {len(calibration)}"
        )
    calibration, selection = calibration[:-held], calibration[-held:]
    convs = conv_names(wrapper)
    # The fp32 side is the same for every candidate: computed once.
    inputs = [torch.from_numpy(_resized(image, shape))[None] for image in selection]
    with torch.no_grad():
        fp32_labels = [labels_from_coarse(wrapper(x), *shape) for x in inputs]
    for k in (0, 1, 2, 4, 8):
        calibrated = _Calibrated(wrapper, calibration, shape, convs[:k])
        agreement = _simulated_agreement(calibrated, shape, inputs, fp32_labels)
        if progress:
            progress(f"{k} convolutions in fp32: simulated agreement {agreement:.4f}")
        if agreement >= gate.min_label_agreement:
            break
    return calibrated


def quantize_artifact(
    artifact: str | Path,
    output: str | Path,
    *,
    calibration: Sequence[np.ndarray],
    gate_images: Sequence[np.ndarray],
    gate_labels: Sequence[np.ndarray] | None = None,
    shapes: Sequence[tuple[int, int]],
    max_batch: int = 1,
    threads: int | None = None,
    gate: Gate | None = None,
    keep_fp32: Sequence[str] | str = "auto",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    save_calibration_to: str | Path | None = None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the int8 AOTInductor package of a fused TorchScript artifact; return its metadata.

    `calibration`: real RGB uint8 images (a few hundred is typical; they are resized to the
    first planned shape). `gate_images` (and `gate_labels`, train-id maps with 255 = ignore)
    must be held out of calibration and training. `keep_fp32`: module names of the artifact
    module (e.g. "net.encoder._conv_stem") that stay fp32, or "auto" (see `_calibrate`).
    `provenance` (e.g. the recordings calibration and gate came from) goes into the record.
    `save_calibration_to`: also write the calibration (observer statistics, fp32 modules,
    gate) there, so the same int8 model can be compiled on another machine without images
    (`ifa_rt.deploy.calibration`; `<name>.int8.pt` beside an artifact is found by
    `Segmenter(..., precision="int8")`).
    Raises GateFailed, without writing, when the gate is missed and `force` is false;
    RuntimeError on a CPU without VNNI.
    """
    if not cpu_has_vnni():
        raise RuntimeError(
            "quantize: int8 needs a CPU with VNNI (avx512_vnni, avx_vnni or amx_int8); "
            "this CPU has none, so int8 would be slower than fp32 here"
        )
    if not calibration:
        raise ValueError("quantize: 'calibration': expected at least one image, got none")
    if not gate_images:
        raise ValueError("quantize: 'gate_images': expected held-out images, got none")
    if gate_labels is not None and len(gate_labels) != len(gate_images):
        raise ValueError(
            f"quantize: 'gate_labels': expected {len(gate_images)} maps, got {len(gate_labels)}"
        )
    gate = gate or Gate()
    artifact, output = Path(artifact), Path(output)
    shapes = [(int(h), int(w)) for h, w in shapes]
    wrapper, meta = rebuild_from_artifact(artifact, coarse=True)
    calibrated = _calibrate(wrapper, calibration, shapes[0], keep_fp32, gate, progress)
    facts: dict[str, Any] = {
        "scheme": "PT2E x86 inductor: int8 per-channel weights, uint8 per-tensor activations",
        "calibration_images": len(calibration),
        **(provenance or {}),
        "fp32_modules": calibrated.keep_fp32,
        "fp32_for_the_compiler": unlowerable(wrapper),
    }
    with tempfile.TemporaryDirectory(prefix="ifa_rt_int8_") as tmp:
        staged = Path(tmp) / output.name
        package_meta = compile_package(
            wrapper,
            meta,
            artifact,
            staged,
            shapes=shapes,
            max_batch=max_batch,
            threads=threads,
            progress=progress,
            precision="int8",
            compile_bucket=calibrated.compile,
            extra={"quantization": facts},
        )
        report = _gate_report(staged, artifact, shapes[0], gate_images, gate_labels, meta, gate)
        if not report["passed"] and not force:
            raise GateFailed(f"quantize: the int8 model missed the gate: {describe(report)}")
        facts["gate"] = report
        # The gate is known only now: rewrite the package with it (the models are unchanged).
        package_meta = _with_metadata(staged, output, dict(package_meta, quantization=facts))
    if save_calibration_to is not None:
        save_calibration(save_calibration_to, artifact, calibrated, facts)
    return package_meta


def save_calibration(
    path: str | Path, artifact: Path, calibrated: _Calibrated, facts: dict
) -> None:
    """The int8 calibration of `artifact`: what compiling its int8 model needs besides it."""
    import json

    torch.save(
        {
            "format_version": CALIBRATION_VERSION,
            "artifact_sha256": file_sha256(artifact),
            "keep_fp32": list(calibrated.keep_fp32),
            "observers": {k: v.detach().clone() for k, v in calibrated.state.items()},
            "quantization": json.dumps(facts),  # plain data: loadable with weights_only=True
        },
        path,
    )


def _with_metadata(src: Path, dst: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Copy package `src` to `dst` with `meta` as its `extra/ifa_rt.json`."""
    import json
    import os
    import zipfile

    from .metadata import EXTRA_FILE

    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f"{dst.name}.{os.getpid()}.partial")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith(f"/extra/{EXTRA_FILE}"):
                data = json.dumps(meta).encode()
            zout.writestr(item, data)
    os.replace(partial, dst)
    return meta


quantize = quantize_artifact  # the public name: ifa_rt.quantize
