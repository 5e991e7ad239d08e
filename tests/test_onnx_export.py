"""ONNX export of the fused model (deploy/onnx_export.py): ONNX Runtime reproduces torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _model_util import randomize_batchnorm
from ifa_rt.deploy.onnx_export import MIN_OPSET, check_onnx, export_onnx, onnx_session
from ifa_rt.model import build_model

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE = (67, 93)  # odd, so the nearest-index rule and the final upsample are really exercised


@pytest.fixture(scope="module")
def model():
    # The smallest encoder with a narrow head: export time is mostly weight serialisation.
    torch.manual_seed(0)
    net = build_model(
        "camvid-lite0", pretrained_backbone=False, neck_channels=32, mlp_hidden=(64, 32, 32)
    )
    return randomize_batchnorm(net).eval()


@pytest.fixture(scope="module")
def logits_file(model, tmp_path_factory):
    return export_onnx(
        model,
        tmp_path_factory.mktemp("onnx") / "m.onnx",
        height=SIZE[0],
        width=SIZE[1],
        output="logits",
    )


def test_ort_logits_match_torch_on_real_images(model, logits_file, real_image):
    images = np.stack([real_image(i, SIZE) for i in range(2)])  # batch 2: the axis is dynamic
    err = check_onnx(onnx_session(logits_file, threads=1), model, images)
    assert err <= 1e-4, f"max |Δlogit| / scale = {err:.2e}"


def test_geometry_is_baked_in_and_opset(logits_file):
    graph = onnx.load(str(logits_file))
    ops = {n.op_type for n in graph.graph.node}
    assert not ops & {"Sin", "Cos", "Round"}, "the PE term and indices should be constants"
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


def test_labels_output_is_the_argmax_of_the_logits(model, logits_file, tmp_path, real_image):
    path = export_onnx(model, tmp_path / "labels.onnx", height=SIZE[0], width=SIZE[1])
    images = real_image(1, SIZE)[None]
    got = onnx_session(path, threads=1, spinning=False).run(None, {"images": images})[0]
    logits = onnx_session(logits_file, threads=1).run(None, {"images": images})[0]
    assert got.dtype == np.uint8 and got.shape == (1, *SIZE)
    top2 = np.sort(logits, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 1e-5 * np.abs(logits).max()
    assert np.array_equal(got[decided], logits.argmax(1).astype(np.uint8)[decided])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"opset": 16}, "'opset': expected >= 17, got 16"),
        ({"output": "probs"}, "'output': expected one of"),
        ({"precision": "bf16"}, "'precision': expected one of"),
    ],
)
def test_rejects_bad_arguments(model, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        export_onnx(model, tmp_path / "x.onnx", height=64, width=64, **kwargs)


def test_cuda_session_without_cuda_provider_says_so(logits_file):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(RuntimeError, match="CUDAExecutionProvider"):
        onnx_session(logits_file, device="cuda")
