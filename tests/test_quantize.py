"""int8 packages: PT2E quantization of the bundled model behind an accuracy gate.

The gate is computed from real CamVid frames (checked here by recomputing it through the C++
runtime), a failing gate writes nothing, and the int8 package serves through `Segmenter` with
the same API, errors and memory-plan counters as fp32.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import ifa_rt
from ifa_rt.data import camvid
from ifa_rt.deploy import quantize as q
from ifa_rt.evaluate import ConfusionMatrix
from ifa_rt.models import resolve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not q.cpu_has_vnni(), reason="int8 needs a CPU with VNNI"),
]
SHAPE = (180, 240)  # half of CamVid's size: quick to calibrate and compile, same model
STEM = ["net.encoder._conv_stem"]


@pytest.fixture(scope="module")
def data(camvid_root):
    rng = np.random.default_rng(0)
    train, val = camvid("train", camvid_root), camvid("val", camvid_root)
    calibration = [train.read(int(i))[0] for i in rng.choice(len(train), 24, replace=False)]
    pairs = [val.read(i) for i in range(0, len(val), 8)]
    return calibration, [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def package(data, tmp_path_factory):
    calibration, images, labels = data
    path = tmp_path_factory.mktemp("int8") / "camvid-int8.pt2"
    gate = q.QuantizationGate(min_label_agreement=0.97, max_miou_drop=0.02)
    meta = q.quantize_artifact(
        resolve("camvid"),
        path,
        calibration=calibration,
        gate_images=images,
        gate_labels=labels,
        shapes=[SHAPE],
        max_batch=2,
        threads=2,
        gate=gate,
        keep_fp32=STEM,
    )
    return path, meta


def _resize(image, labels=False):
    from PIL import Image

    mode = Image.NEAREST if labels else Image.BILINEAR
    return np.asarray(Image.fromarray(image).resize((SHAPE[1], SHAPE[0]), mode))


def test_gate_is_measured_on_the_real_images(package, data):
    path, meta = package
    _, images, labels = data
    gate = meta["quantization"]["gate"]
    assert gate["passed"] and gate["images"] == len(images) and gate["shape"] == list(SHAPE)
    assert meta["quantization"]["fp32_modules"] == STEM
    assert meta["aoti"]["precision"] == "int8"
    # Recompute it through the C++ runtime: int8 package vs the fp32 TorchScript artifact.
    int8 = ifa_rt.Segmenter(path, threads=2)
    fp32 = ifa_rt.Segmenter("camvid", shapes=[SHAPE], threads=2)
    cms = {k: ConfusionMatrix(11) for k in ("fp32", "int8")}
    same = total = 0
    for image, truth in zip(images, labels, strict=True):
        x, t = _resize(image), _resize(truth, labels=True)
        a, b = int8(x), fp32(x)
        same, total = same + int((a == b).sum()), total + a.size
        cms["int8"].update(a, t)
        cms["fp32"].update(b, t)
    assert gate["label_agreement"] == pytest.approx(same / total, abs=1e-12)
    assert 0.97 <= gate["label_agreement"] < 1.0  # int8 is not fp32: a real, measured number
    assert gate["miou_int8"] == pytest.approx(cms["int8"].miou(), abs=1e-12)
    assert gate["miou_fp32"] == pytest.approx(cms["fp32"].miou(), abs=1e-12)
    assert gate["miou_fp32"] > 0.5  # the gate ran on a good model and real labels
    assert set(gate["per_class_iou"]["int8"]) == set(int8.classes)


def test_int8_package_serves_like_fp32(package, data, real_image):
    path, _ = package
    seg = ifa_rt.Segmenter(path, threads=2)
    assert seg.plan["precision"] == "int8" and seg.options.precision == "int8"
    assert seg.metadata["quantization"]["gate"]["passed"]
    frames = np.stack([_resize(image) for image in data[1][:3]])
    np.testing.assert_array_equal(seg(frames), np.stack([seg(f) for f in frames]))  # 2 + 1
    assert seg.stats()["allocations_after_warmup"] == 0
    odd = real_image(0, (100, 132))  # unplanned: the fp32 fallback artifact serves it
    fp32 = ifa_rt.Segmenter("camvid", threads=2)
    np.testing.assert_array_equal(seg(odd), fp32(odd))
    assert seg.stats()["fallback_calls"] == 1
    with pytest.raises(ValueError, match="expected dtype uint8, got float32"):
        seg(frames[0].astype(np.float32))
    with pytest.raises(ValueError, match="expected 'int8' \\(the precision this package was"):
        ifa_rt.Segmenter(path, precision="bf16")
    assert seg(frames[0]).shape == SHAPE  # still usable


def test_failing_gate_writes_nothing(data, tmp_path):
    calibration, images, labels = data
    out = tmp_path / "never.pt2"
    strict = q.QuantizationGate(min_label_agreement=1.0)
    with pytest.raises(
        q.GateFailed, match=r"missed the gate: label agreement 0\.9\d+ \(needs >= 1"
    ):
        q.quantize_artifact(
            resolve("camvid"),
            out,
            calibration=calibration[:8],
            gate_images=images[:4],
            gate_labels=labels[:4],
            shapes=[SHAPE],
            threads=2,
            gate=strict,
            keep_fp32=STEM,
        )
    assert not out.exists() and not list(tmp_path.iterdir())


def test_forced_package_records_the_failed_gate(package, data, tmp_path):
    path, meta = package
    # Rewriting only the metadata is what `force` does after a failed gate; check the reader.
    forced = json.loads(json.dumps(meta))
    forced["quantization"]["gate"]["passed"] = False
    out = q._with_metadata(path, tmp_path / "forced.pt2", forced)
    assert out["quantization"]["gate"]["passed"] is False
    with zipfile.ZipFile(tmp_path / "forced.pt2") as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/ifa_rt.json"))
        assert json.loads(archive.read(name))["quantization"]["gate"]["passed"] is False
    seg = ifa_rt.Segmenter(tmp_path / "forced.pt2", threads=1)
    assert seg.metadata["quantization"]["gate"]["passed"] is False


def test_cpu_without_vnni_is_refused(monkeypatch, data, tmp_path):
    assert q.cpu_has_vnni({"avx2", "avx512_vnni"}) and q.cpu_has_vnni({"avx_vnni"})
    assert not q.cpu_has_vnni({"avx2", "fma", "avx512f"})
    monkeypatch.setattr(q, "cpu_has_vnni", lambda flags=None: False)
    with pytest.raises(RuntimeError, match="int8 needs a CPU with VNNI"):
        q.quantize_artifact(
            resolve("camvid"),
            tmp_path / "x.pt2",
            calibration=data[0][:1],
            gate_images=data[1][:1],
            shapes=[SHAPE],
        )


def test_int8_on_a_torchscript_artifact_is_refused():
    with pytest.raises(ValueError, match="'int8' runs from a quantized AOTInductor package"):
        ifa_rt.Segmenter("camvid", precision="int8")
