"""`ifa-rt export` formats: ONNX from the bundled model (ONNX Runtime's labels agree with the
TorchScript artifact on real CamVid frames), and output folders created when missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ifa_rt.bundled import resolve
from ifa_rt.cli import main
from ifa_rt.deploy.artifact import load_artifact

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

SIZE = (360, 480)  # CamVid frames as they are


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    """The bundled model exported to ONNX into a folder that does not exist yet."""
    path = tmp_path_factory.mktemp("onnx") / "new" / "deeper" / "camvid.onnx"
    args = ["export", "--model", "camvid", "--format", "onnx", "--shapes", "360x480"]
    assert main([*args, "-o", str(path)]) == 0
    return path


def test_onnx_labels_agree_with_the_torchscript_artifact(onnx_file, camvid_val_paths, capsys):
    from ifa_rt.deploy.onnx_export import onnx_session

    frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in camvid_val_paths[:2]])
    session = onnx_session(onnx_file, threads=2, spinning=False)
    (got,) = session.run(None, {"images": frames})  # batch 2: the batch axis is dynamic
    scripted, _ = load_artifact(resolve("camvid"))
    with torch.no_grad():
        want = scripted(torch.from_numpy(frames)).numpy()
    assert got.dtype == np.uint8 and got.shape == (2, *SIZE)
    agreement = float((got == want).mean())
    # Same weights, same fused graph: only float rounding at near-ties may differ (0 of 345,600
    # pixels when measured).
    assert agreement >= 0.9999, f"label agreement {agreement:.6f}"
    assert len(np.unique(want)) >= 5  # a real street scene, not one class everywhere


def test_onnx_file_carries_the_artifacts_metadata(onnx_file):
    proto = onnx.load(str(onnx_file))
    record = json.loads({p.key: p.value for p in proto.metadata_props}["ifa_rt"])
    _, meta = load_artifact(resolve("camvid"))
    assert record["classes"] == meta["classes"] and record["palette"] == meta["palette"]
    assert record["mean"] == meta["mean"] and record["input_size"] == list(SIZE)
    assert record["output"] == "labels"
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "export: --format onnx needs --shapes HxW and -o FILE.onnx (no --triton)"),
        (
            ["--shapes", "360x480,720x960"],
            "export: '--shapes': --format onnx serves one input size (its geometry is baked "
            "in), got 2: 360x480,720x960",
        ),
    ],
)
def test_onnx_usage_errors(tmp_path, capsys, extra, message):
    args = ["export", "--model", "camvid", "--format", "onnx", "-o", str(tmp_path / "m.onnx")]
    assert main([*args, *extra]) == 1
    assert capsys.readouterr().err == f"ifa-rt export: error: {message}\n"


def test_torchscript_export_creates_its_folder(tmp_path):
    target = tmp_path / "not" / "there" / "camvid.ifa.pt"
    assert main(["export", "--model", "camvid", "-o", str(target)]) == 0
    assert target.read_bytes() == resolve("camvid").read_bytes()
