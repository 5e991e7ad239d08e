"""int8 packages: PT2E quantization of the bundled model behind an accuracy gate.

The gate is computed from real CamVid frames (checked here by recomputing it through the C++
runtime), a failing gate writes nothing, and the int8 package serves through `Segmenter` with
the same API, errors and memory-plan counters as fp32.
"""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

import ifa_rt
from _reliability import fixture_dir
from ifa_rt.bundled import resolve
from ifa_rt.data import camvid
from ifa_rt.deploy import quantize as q
from ifa_rt.evaluate import ConfusionMatrix
from ifa_rt.runtime.precision import cpu_has_vnni
from ifa_rt.side_files import calibration_for, load_calibration

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not cpu_has_vnni(), reason="int8 needs a CPU with VNNI"),
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
    fp32 = ifa_rt.Segmenter("camvid", precision="fp32", shapes=[SHAPE], threads=2)
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
    fp32 = ifa_rt.Segmenter("camvid", precision="fp32", threads=2)
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


def test_a_resnet_stem_quantizes_and_compiles(data, tmp_path, real_image):
    """The ResNet stem's ceil_mode max-pool stays fp32 (inductor's quantized max-pool drops
    ceil_mode and the graph failed to compile at the first add that met the true size)."""
    import torch

    torch.manual_seed(0)
    model = ifa_rt.build_model("camvid-r18", neck_channels=16, mlp_hidden=(32, 16)).eval()
    artifact = tmp_path / "r18.ifa.pt"
    ifa_rt.export(model, artifact)
    calibration, images, _ = data
    meta = q.quantize_artifact(
        artifact,
        tmp_path / "r18.int8.pt2",
        calibration=calibration[:4],
        gate_images=images[:2],
        shapes=[(64, 96)],
        threads=2,
        gate=q.QuantizationGate(min_label_agreement=0.0),  # random weights: speed, not labels
        keep_fp32=[],
    )
    assert meta["quantization"]["fp32_for_the_compiler"] == ["net.encoder.maxpool"]
    seg = ifa_rt.Segmenter(tmp_path / "r18.int8.pt2", threads=2)
    assert seg.plan["precision"] == "int8"
    frame = real_image(0, (64, 96))
    assert seg(frame).shape == (64, 96)
    assert seg.stats()["bucket_runs"] == 1


def test_forced_package_records_the_failed_gate(tmp_path, camvid_root, capsys):
    """`ifa-rt quantize --force` with a gate no model can pass (agreement above 100 %) still
    writes the package and the calibration, both recording the failed gate as measured, and
    precision="auto" does not take that calibration."""
    from ifa_rt.cli import main as cli_main
    from ifa_rt.runtime import prepare

    lone = tmp_path / "lone.ifa.pt"
    shutil.copy(resolve("camvid"), lone)
    out, calibration = tmp_path / "forced.pt2", tmp_path / "lone.int8.pt"  # beside lone
    argv = ["quantize", "--model", str(lone), "--shapes", f"{SHAPE[0]}x{SHAPE[1]}"]
    argv += [
        "-o",
        str(out),
        "--save-calibration",
        str(calibration),
        "--keep-fp32",
        STEM[0],
        "--threads",
        "2",
    ]
    argv += ["--calibration-count", "8", "--gate-count", "4", "--min-agreement", "1.01"]
    assert cli_main([*argv, "--data", str(camvid_root.parent), "--force"]) == 0
    assert f"wrote {out}: int8, FAILED (forced) gate" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/ifa_rt.json"))
        gate = json.loads(archive.read(name))["quantization"]["gate"]
    assert gate["passed"] is False and gate["min_label_agreement"] == 1.01
    assert 0.9 < gate["label_agreement"] < 1.0 and gate["images"] == 4  # measured, not made up
    seg = ifa_rt.Segmenter(out, threads=1)
    assert seg.metadata["quantization"]["gate"] == gate and seg.plan["precision"] == "int8"
    assert load_calibration(calibration, lone)["quantization"]["gate"] == gate
    choice = prepare.choose(lone, {"device": "cpu", "precision": "auto", "shapes": [SHAPE]})
    assert choice.precision == "fp32"
    assert choice.skipped["int8"] == "the int8 calibration failed its accuracy gate"


def test_cpu_without_vnni_is_refused(monkeypatch, data, tmp_path):
    assert cpu_has_vnni({"avx2", "avx512_vnni"}) and cpu_has_vnni({"avx_vnni"})
    assert not cpu_has_vnni({"avx2", "fma", "avx512f"})
    monkeypatch.setattr(q, "cpu_has_vnni", lambda flags=None: False)
    with pytest.raises(RuntimeError, match="int8 needs a CPU with VNNI"):
        q.quantize_artifact(
            resolve("camvid"),
            tmp_path / "x.pt2",
            calibration=data[0][:1],
            gate_images=data[1][:1],
            shapes=[SHAPE],
        )


def test_int8_needs_a_calibration_and_shapes(tmp_path):
    lone = tmp_path / "lone.ifa.pt"
    shutil.copy(resolve("camvid"), lone)
    with pytest.raises(
        ValueError, match=r"'int8' needs the artifact's int8 calibration \(lone\.int8\.pt"
    ):
        ifa_rt.Segmenter(lone, precision="int8", shapes=[SHAPE])
    with pytest.raises(
        ValueError, match="'shapes': expected the \\(height, width\\) sizes to compile"
    ):
        ifa_rt.Segmenter("camvid", precision="int8")
    with pytest.raises(
        ValueError, match="'runtime': expected 'auto' or 'aoti' for precision 'int8'"
    ):
        ifa_rt.Segmenter("camvid", precision="int8", shapes=[SHAPE], runtime="jit")
    # A calibration made for another artifact is refused, not silently applied.
    (tmp_path / "lone.int8.pt").write_bytes(calibration_for(resolve("camvid")).read_bytes())
    assert load_calibration(tmp_path / "lone.int8.pt", lone)["keep_fp32"]  # same bytes: accepted
    tiny = fixture_dir() / "tiny.ifa.pt"
    with pytest.raises(
        ValueError, match="expected the calibration of .*quantize this artifact again"
    ):
        load_calibration(tmp_path / "lone.int8.pt", tiny)


def test_bundled_calibration_compiles_the_gated_int8_model(tmp_path, monkeypatch, data, real_image):
    """`Segmenter("camvid", precision="int8")`: the shipped calibration, compiled here, serves
    the int8 model whose gate (measured when the calibration was made) is in its metadata."""
    monkeypatch.setenv("IFA_RT_CACHE", str(tmp_path / "cache"))
    record = load_calibration(calibration_for(resolve("camvid")), resolve("camvid"))
    gate = record["quantization"]["gate"]
    assert gate["passed"] and gate["images"] >= 50 and gate["label_agreement"] >= 0.99
    assert gate["miou_drop"] <= 0.01 and set(gate["per_class_iou"]) == {"fp32", "int8"}
    seg = ifa_rt.Segmenter("camvid", precision="int8", shapes=[SHAPE], threads=2)
    assert seg.plan["precision"] == "int8" and seg.metadata["quantization"]["gate"] == gate
    fp32 = ifa_rt.Segmenter("camvid", precision="fp32", shapes=[SHAPE], threads=2)
    frames = [_resize(image) for image in data[1][:4]]
    agreement = np.mean([np.mean(seg(f) == fp32(f)) for f in frames])
    assert agreement >= 0.98, agreement  # the gate's 99 % is over all val frames
    assert len(list((tmp_path / "cache").glob("*.pt2"))) == 1
    again = ifa_rt.Segmenter("camvid", precision="int8", shapes=[SHAPE], threads=2)  # cached
    np.testing.assert_array_equal(again(frames[0]), seg(frames[0]))

    # The default (precision and runtime "auto") finds that package in the cache and serves
    # on it from construction: the int8 engine, the same labels.
    auto = ifa_rt.Segmenter("camvid", shapes=[SHAPE], threads=2)
    assert auto.plan["choice"]["precision"] == "int8" and auto.plan["choice"]["skipped"] == {}
    assert auto.stats()["engine"] == "aoti int8" and auto.plan["choice"]["tier_up"] is None
    np.testing.assert_array_equal(auto(frames[1]), seg(frames[1]))


def test_auto_without_a_gated_int8_is_fp32(tmp_path):
    lone = tmp_path / "lone.ifa.pt"
    shutil.copy(resolve("camvid"), lone)
    auto = ifa_rt.Segmenter(lone, shapes=[SHAPE], threads=1)
    assert auto.plan["choice"]["skipped"]["int8"] == "no int8 calibration beside the artifact"
    assert auto.plan["precision"] == "fp32"
