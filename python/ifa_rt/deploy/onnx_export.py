"""Export the fused IFA model to ONNX for a fixed input size (the ONNX Runtime benchmark baseline).

The graph is the artifact's (`ImageSegmenter` around the exact fused form, docs/model.md §4):
uint8 NHWC images in, uint8 labels (or float32 logits) out, so ONNX Runtime does the same work
as the C++ runtime. Steps:
  1. Wrap the fused model and run it once at the export size: that fills its geometry cache
     (gather indices and the bias + PE term of the first MLP layer, per shape).
  2. Trace-export (opset >= 17). Tracing reads the cache, so the per-shape geometry becomes
     graph constants: the file serves that (height, width) only; the batch axis stays dynamic.
  3. Optionally check ONNX Runtime against the torch module (max |Δlogit| / scale).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .export import ImageSegmenter, _inference_net
from .metadata import DEFAULT_MEAN, DEFAULT_STD

__all__ = ["MIN_OPSET", "check_onnx", "export_onnx", "onnx_session"]

log = logging.getLogger(__name__)
MIN_OPSET = 17
_OUTPUTS = ("labels", "logits")


class _Logits(nn.Module):
    """`ImageSegmenter.logits` as a module's forward, for the exporter."""

    def __init__(self, segmenter: ImageSegmenter) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, images: Tensor) -> Tensor:
        return self.segmenter.logits(images)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    height: int,
    width: int,
    output: str = "labels",
    form: str = "fused",
    precision: str = "fp32",
    opset: int = MIN_OPSET,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> Path:
    """Export an eval-mode IFA segmentor to an ONNX file serving uint8 [B, height, width, 3].

    Args:
        model: an IFA segmentor (normalised float [B,3,H,W] -> logits [B,C,H,W]).
        path: the `.onnx` file to write (parent folders are created).
        height, width: the one input size the file serves (the geometry is baked in).
        output: "labels" (uint8 [B,H,W], the artifact's `forward`) or "logits" (float32).
        form: "fused" (docs/model.md §4) or "reference", as in `export`.
        precision: "fp32" or "fp16" (the compute dtype follows `mean`, as in the artifact).
        opset: ONNX opset, at least 17.
    """
    if output not in _OUTPUTS:
        raise ValueError(f"export_onnx: 'output': expected one of {list(_OUTPUTS)}, got {output!r}")
    if opset < MIN_OPSET:
        raise ValueError(f"export_onnx: 'opset': expected >= {MIN_OPSET}, got {opset}")
    dtypes = {"fp32": torch.float32, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(
            f"export_onnx: 'precision': expected one of {list(dtypes)}, got {precision!r}"
        )
    wrapper = ImageSegmenter(_inference_net(model, form), mean, std).eval().to(dtypes[precision])
    module: nn.Module = wrapper if output == "labels" else _Logits(wrapper)
    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    with torch.no_grad():
        module(example)  # fills the fused geometry cache, so tracing bakes it in as constants
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # The tracer warns that python ints / the cache lookup are constants: that is the intent.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=[output],
            dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}},
        )
    log.info("exported %s (%dx%d, %s, %s)", path, height, width, output, precision)
    return path


def onnx_session(
    path: str | Path, *, threads: int | None = None, device: str = "cpu", spinning: bool = True
) -> Any:
    """An ONNX Runtime session with full graph optimisation and `threads` intra-op threads.

    `spinning=False` stops its idle threads from busy-waiting after a run: on a small machine
    shared with other engines (an interleaved benchmark) they would steal the next call's cores.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError(
                f"onnx_session: 'device': expected an onnxruntime with CUDAExecutionProvider for "
                f"{device!r}, got providers {ort.get_available_providers()}"
            )
        index = int(device.split(":")[1]) if ":" in device else 0
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index})]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def check_onnx(
    session: Any,
    model: nn.Module,
    images: np.ndarray,
    *,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
) -> float:
    """Max |Δlogit| / max |logit| of a logits session vs the eager model on uint8 NHWC images."""
    reference = ImageSegmenter(model.eval(), mean, std).eval()
    with torch.no_grad():
        want = reference.logits(torch.from_numpy(np.ascontiguousarray(images)))
    name = session.get_inputs()[0].name
    got = torch.from_numpy(session.run(None, {name: images})[0]).float()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-6))
