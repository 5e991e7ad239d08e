"""Gates for bf16/fp16 and how precision="auto" chooses (no VNNI needed here).

The gate is measured through the C++ runtime on real CamVid val frames and recomputed here
independently; a gate belongs to one artifact (sha256); bf16 is chosen only where it passed
its gate and the CPU computes bf16 natively (AVX512_BF16 or AMX; emulated bf16 is slower).
"""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

import ifa_rt
from ifa_rt import side_files
from ifa_rt.bundled import resolve
from ifa_rt.cli import main as cli_main
from ifa_rt.data import camvid
from ifa_rt.deploy.precision_gate import gate_precision
from ifa_rt.runtime import precision as p


@pytest.fixture(scope="module")
def lone(tmp_path_factory):
    """A copy of the bundled artifact with nothing beside it."""
    path = tmp_path_factory.mktemp("lone") / "lone.ifa.pt"
    shutil.copy(resolve("camvid"), path)
    return path


@pytest.fixture(scope="module")
def val(camvid_root):
    pairs = [camvid("val", camvid_root).read(i) for i in (0, 30, 60)]
    return [x for x, _ in pairs], [t for _, t in pairs]


def test_bf16_gate_is_measured_on_real_frames(lone, val, tmp_path):
    images, labels = val
    record = gate_precision(lone, "bf16", images, labels, threads=2, output=tmp_path / "g.json")
    assert json.loads((tmp_path / "g.json").read_text()) == record
    gate = record["gate"]
    fp32 = ifa_rt.Segmenter(lone, threads=2, precision="fp32")
    bf16 = ifa_rt.Segmenter(lone, threads=2, precision="bf16")
    same = sum(int((fp32(x) == bf16(x)).sum()) for x in images)
    assert gate["label_agreement"] == same / sum(x.shape[0] * x.shape[1] for x in images)
    assert 0.95 < gate["label_agreement"] < 1.0  # bf16 does change some labels
    assert gate["passed"] == (gate["label_agreement"] >= 0.99 and gate["miou_drop"] <= 0.01)
    assert set(gate["per_class_iou"]) == {"fp32", "bf16"} and gate["images"] == 3
    assert record["artifact_sha256"] and record["precision"] == "bf16"


def test_auto_takes_bf16_only_with_a_passed_gate_and_amx(lone, monkeypatch):
    from ifa_rt.runtime import prepare

    settings = {"device": "cpu", "precision": "auto"}  # no shapes: int8 cannot be compiled
    choice = prepare.choose(lone, settings)
    assert choice.precision == "fp32" and choice.runtime == "auto"
    assert choice.skipped["int8"] == "no int8 calibration beside the artifact"
    assert choice.skipped["bf16"] == "no passed bf16 gate for this artifact"
    digest = hashlib.sha256(lone.read_bytes()).hexdigest()
    passed = {"format_version": 1, "precision": "bf16", "gate": {"passed": True}}
    passed["artifact_sha256"] = digest
    p.gate_file(lone, "bf16").write_text(json.dumps(passed))
    try:
        # Emulated bf16 is slower than fp32; AVX512_BF16 or AMX compute it natively.
        monkeypatch.setattr(side_files, "cpu_flags", lambda: {"avx2", "avx512f"})
        choice = prepare.choose(lone, settings)
        assert choice.precision == "fp32"
        assert choice.skipped["bf16"] == "this CPU has no native bf16 (AVX512_BF16 or AMX)"
        for flags in ({"avx512f", "avx512_bf16"}, {"amx_bf16", "amx_tile"}):
            monkeypatch.setattr(side_files, "cpu_flags", lambda flags=flags: flags)
            assert prepare.choose(lone, settings).precision == "bf16"
        monkeypatch.setattr(
            side_files, "cpu_flags", lambda: {"amx_bf16", "amx_tile", "avx512_bf16"}
        )
        # With shapes, bf16 runs compiled (its own cache entry), as fp32 and int8 do.
        compiled = prepare.choose(lone, {**settings, "shapes": [(64, 96)], "runtime": "aoti"})
        assert (compiled.precision, compiled.runtime) == ("bf16", "aoti")
        fp32_entry = prepare.package_path(lone, {"shapes": [(64, 96)]}, "fp32")
        assert compiled.package != fp32_entry and compiled.package.parent == fp32_entry.parent
        # A gate written for other bytes (or one that failed) does not count.
        p.gate_file(lone, "bf16").write_text(json.dumps({**passed, "artifact_sha256": "0" * 64}))
        assert prepare.choose(lone, settings).precision == "fp32"
        failed = {**passed, "gate": {"passed": False}}
        p.gate_file(lone, "bf16").write_text(json.dumps(failed))
        assert prepare.choose(lone, settings).precision == "fp32"
        # On CUDA, fp16/bf16 with passed gates are chosen and int8 never is.
        p.gate_file(lone, "bf16").write_text(json.dumps(passed))
        choice = prepare.choose(lone, {"device": "cuda", "shapes": [(64, 96)]})
        assert choice.precision == "bf16" and choice.runtime == "auto"
        assert choice.skipped == {
            "int8": "int8 is a CPU path",
            "fp16": "no passed fp16 gate for this artifact",
        }
    finally:
        p.gate_file(lone, "bf16").unlink()


def test_auto_with_nothing_gated_is_fp32_and_says_why(lone):
    auto = ifa_rt.Segmenter(lone, shapes=[(64, 96)], threads=1)  # the defaults: auto, auto
    choice = auto.plan["choice"]
    assert choice["precision"] == "fp32" and choice["runtime"] == "aoti"
    assert choice["skipped"]["int8"] == "no int8 calibration beside the artifact"
    assert auto.plan["precision"] == "fp32"
    # The suite disables background compiles (conftest): TorchScript serves, and says so.
    assert choice["tier_up"]["state"] == "disabled"
    assert auto.stats()["engine"] == "jit+optimize_for_inference fp32"


def test_bundled_bf16_gate_belongs_to_the_bundled_artifact():
    record = json.loads(p.gate_file(resolve("camvid"), "bf16").read_text())
    assert p.gate_passed(resolve("camvid"), "bf16")
    gate = record["gate"]
    assert gate["images"] == 101 and gate["label_agreement"] >= 0.99 and gate["passed"]
    assert gate["miou_drop"] <= 0.01


def test_cli_writes_the_gate(lone, camvid_root, capsys):
    argv = ["quantize", "--precision", "bf16", "--model", str(lone), "--gate-count", "2"]
    assert cli_main([*argv, "--data", str(camvid_root.parent), "--threads", "2"]) == 0
    record = json.loads(p.gate_file(lone, "bf16").read_text())
    p.gate_file(lone, "bf16").unlink()
    assert record["gate"]["images"] == 2
    assert "bf16 gate" in capsys.readouterr().out
    with pytest.raises(ValueError, match="expected 'bf16' or 'fp16', got 'int4'"):
        gate_precision(lone, "int4", [], None)
    # A failed gate is written (auto reads it as "skip bf16") and the command exits non-zero.
    strict = [*argv, "--min-agreement", "1.01", "--data", str(camvid_root.parent)]
    assert cli_main([*strict, "--threads", "2"]) == 1
    assert not p.gate_passed(lone, "bf16")
    assert "bf16 gate FAILED" in capsys.readouterr().out
    p.gate_file(lone, "bf16").unlink()


def test_a_bundled_models_gate_goes_to_the_cache_not_the_package(
    tmp_path, monkeypatch, camvid_root, capsys
):
    """In a wheel install the bundled folder is site-packages: a gate measured for a bundled
    model goes to the user cache ($IFA_RT_CACHE/gates), is read before the shipped one, and
    nothing in the bundled folder changes; -o still writes where it is told (`make model`)."""
    import ifa_rt.bundled as bundled

    bundle = tmp_path / "bundled"  # a stand-in for site-packages/ifa_rt/bundled
    bundle.mkdir()
    shutil.copy(resolve("camvid"), bundle / "camvid.ifa.pt")
    shutil.copy(bundled.BUNDLED_DIR / "camvid.bf16.json", bundle / "camvid.bf16.json")
    monkeypatch.setattr(bundled, "BUNDLED_DIR", bundle)
    monkeypatch.setenv("IFA_RT_CACHE", str(tmp_path / "cache"))
    artifact = resolve("camvid")
    assert artifact == bundle / "camvid.ifa.pt"
    # Before any run: the shipped record, which passed.
    assert p.gate_file(artifact, "bf16") == bundle / "camvid.bf16.json"
    assert p.gate_passed(artifact, "bf16")
    listing = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in bundle.iterdir()}
    # A gate that cannot pass (agreement above 100 %), so its record differs from the shipped
    # one and reading it back shows which of the two is read.
    argv = ["quantize", "--precision", "bf16", "--model", "camvid", "--gate-count", "2"]
    argv += ["--data", str(camvid_root.parent), "--threads", "2"]
    bundle.chmod(0o555)  # read-only as site-packages may be (root writes anyway: see below)
    try:
        assert cli_main([*argv, "--min-agreement", "1.01"]) == 1
    finally:
        bundle.chmod(0o755)
    assert {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in bundle.iterdir()} == listing
    [written] = (tmp_path / "cache" / "gates").iterdir()
    assert written.name.startswith("camvid-") and written.name.endswith(".bf16.json")
    assert f"wrote {written}: bf16 gate FAILED" in capsys.readouterr().out
    assert p.gate_file(artifact, "bf16") == written  # the cache first
    record = json.loads(written.read_text())
    assert record["gate"]["images"] == 2 and record["gate"]["min_label_agreement"] == 1.01
    assert not p.gate_passed(artifact, "bf16")
    # An explicit path is written as given (how `make model` writes the shipped record).
    shipped = tmp_path / "ship" / "camvid.bf16.json"
    assert cli_main([*argv, "-o", str(shipped)]) == 0
    assert json.loads(shipped.read_text())["gate"]["passed"]
    assert [f.name for f in (tmp_path / "cache" / "gates").iterdir()] == [written.name]
