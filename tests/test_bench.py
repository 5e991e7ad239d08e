"""The latency benchmark (scripts/bench/run.py) and `ifa-rt bench`: schema, not speed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ifa_rt
from ifa_rt.bench import load_images, parse_shape, summarize
from ifa_rt.bundled import BUNDLED_DIR

BENCH = Path(__file__).resolve().parents[1] / "scripts" / "bench"
# One tiny cell: the torch.compile variant dominates (~25 s with a cold inductor cache).
VARIANTS = ["segmenter", "onnxruntime", "openvino", "torch_compile"]
# Trained weights for every variant: a random-weight lite0 labels every pixel of a frame as
# one class, so its "labels = eager" would hold for any variant, broken or not.
CHECKPOINT = BUNDLED_DIR / "camvid.ckpt.pt"
TINY = [
    "--preset",
    "camvid-lite0",
    "--checkpoint",
    str(CHECKPOINT),
    "--shapes",
    "64x96",
    "--batches",
    "1",
    "--reps",
    "2",
    "--threads",
    "1",
    "--variants",
    ",".join(VARIANTS),
]
RESULT_KEYS = {
    "schema",
    "command",
    "created_utc",
    "host",
    "loadavg_start",
    "loadavg_end",
    "config",
    "weights",
    "inputs",
    "results",
    "wall_s",
}
RECORD_KEYS = {
    "variant",
    "batch",
    "height",
    "width",
    "status",
    "weights",
    "inputs",
    "reps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "images_per_s",
    "first_call_ms",
    "speedup_vs_segmenter",
    "label_agreement_vs_eager",
    "ms",
    "info",
}


@pytest.fixture(scope="module")
def bench_modules():
    """scripts/bench on sys.path (a folder of scripts, not a package), removed afterwards."""
    sys.path.insert(0, str(BENCH))
    try:
        import correctness
        import measure
        import report

        yield measure, report, correctness
    finally:
        sys.path.remove(str(BENCH))
        for name in ("correctness", "measure", "report"):  # generic names: not left to others
            sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One tiny interleaved run, in its own process as users run it, with its output files."""
    prefix = tmp_path_factory.mktemp("bench") / "tiny"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), *TINY, "--out", str(prefix)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return prefix, json.loads(prefix.with_name("tiny.json").read_text())


def test_every_variant_produced_numbers(result):
    _, res = result
    assert res["schema"] == "ifa_rt.bench/2"
    assert RESULT_KEYS <= set(res), RESULT_KEYS - set(res)
    assert {"cpu", "isa", "amx", "versions"} <= set(res["host"])
    assert res["config"]["variants"] == VARIANTS and res["config"]["precision"] == "fp32"
    for variant in VARIANTS:
        [rec] = [r for r in res["results"] if r["variant"] == variant]
        if variant == "openvino" and importlib.util.find_spec("openvino") is None:
            assert rec["status"] == "skipped" and "openvino" in rec["reason"]
            continue
        assert rec["status"] == "ok", rec.get("reason")
        assert RECORD_KEYS <= set(rec), RECORD_KEYS - set(rec)
        assert len(rec["ms"]) == rec["reps"] == 2 and min(rec["ms"]) > 0
        assert rec["p50_ms"] <= rec["p90_ms"] <= rec["p99_ms"] and rec["first_call_ms"] > 0
        assert rec["speedup_vs_segmenter"] > 0
        agree = rec["label_agreement_vs_eager"]
        assert isinstance(agree, float) and 0.0 <= agree <= 1.0
        assert agree >= 0.99, variant  # same weights, fp32: the same labels up to rounding
        # Logits from each variant's own engine against eager fp32 (correctness.py).
        check = rec["correctness"]
        assert check["precision"] == "fp32" and check["logits_within_tolerance"] is True
        assert check["max_abs_error_rel"] < 1e-3 and check["clear_margin_agreement"] == 1.0
        assert 0.0 <= check["near_tie_fraction"] < 0.01 and "logits_error" not in check
    [seg] = [r for r in res["results"] if r["variant"] == "segmenter"]
    assert seg["speedup_vs_segmenter"] == 1.0
    # The agreement above was over labels worth comparing: trained weights, several classes.
    assert res["weights"] == {"all": f"checkpoint {CHECKPOINT}"}
    labels = ifa_rt.Segmenter("camvid", precision="fp32", threads=1)(load_images((64, 96), 1)[0])
    assert len(np.unique(labels)) >= 3


def test_outputs_written(result):
    prefix, res = result
    for suffix in (".md", "-latency.png", "-speedup.png"):
        assert prefix.with_name("tiny" + suffix).stat().st_size > 0
    table = prefix.with_name("tiny.md").read_text()
    assert table.count("| segmenter | 1 | 64×96 |") == 1 and res["command"] in table
    assert "% peak" not in table


def test_report_regenerates_from_json(result, bench_modules, tmp_path):
    prefix, res = result
    _, report, _ = bench_modules
    assert report.main([str(prefix.with_name("tiny.json")), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r.md").read_text() == report.markdown(res)


def test_rounds_rotate_and_failures_are_recorded(bench_modules):
    measure, _, _ = bench_modules
    calls: list[str] = []

    def runner(name):
        def call(images):
            calls.append(name)
            return images[..., 0].copy()

        return call

    def broken(images):
        raise RuntimeError("no kernel\nmore")

    images = np.zeros((1, 4, 6, 3), np.uint8)
    timings, errors = measure.measure_cell(
        {"a": runner("a"), "b": runner("b"), "c": runner("c"), "x": broken},
        images,
        reps=3,
        warmup=2,
    )
    assert errors == {"x": "RuntimeError: no kernel"}
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up: first call + 1 each
    assert calls[6:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # rotated rounds
    assert all(len(t.ms) == 3 for t in timings.values())
    ref = np.zeros((1, 4, 6), np.uint8)
    assert measure.agreement(timings["a"].labels, ref) == 1.0
    ref[0, 0, :3] = 1
    assert measure.agreement(timings["a"].labels, ref) == pytest.approx(21 / 24)
    with pytest.raises(ValueError, match="expected shape"):
        measure.agreement(ref[0], ref)


def _two_way_logits(margins: np.ndarray) -> np.ndarray:
    """Reference logits [1,3,H,W]: class 1 leads class 0 by `margins`, class 2 far behind."""
    return np.stack([np.ones_like(margins), 1.0 + margins, np.full_like(margins, -2.0)])[None]


def test_correctness_ignores_near_ties_and_catches_clear_errors(bench_modules):
    _, _, correctness = bench_modules
    margins = np.full((4, 6), 1.0, np.float32)
    margins[0] = 1e-3  # 6 of 24 pixels: near-ties for bf16 (threshold 2 x 5 % of the scale)
    reference = _two_way_logits(margins).astype(np.float32)
    np.testing.assert_allclose(correctness.top2_margin(reference)[0], margins, rtol=1e-4)
    # A bf16-like error of 2e-3 on class 0 flips every near-tie and nothing else.
    noisy = reference.copy()
    noisy[:, 0] += 2e-3
    labels = noisy.argmax(1).astype(np.uint8)
    assert np.mean(labels == reference.argmax(1)) == 0.75  # plain agreement sees 6 flips
    check = correctness.compare(reference, labels, noisy, "bf16")
    assert check["clear_margin_agreement"] == 1.0 and check["clear_margin_disagreements"] == 0
    assert check["near_tie_fraction"] == 0.25 and check["clear_margin_pixels"] == 18
    assert check["logits_within_tolerance"] is True
    assert check["max_abs_error_rel"] == pytest.approx(2e-3 / check["logits_scale"], rel=1e-4)
    # One clear-margin pixel labelled wrongly is caught, with or without logits.
    wrong = labels.copy()
    wrong[0, 2, 3] = 2
    for logits in (noisy, None):
        check = correctness.compare(reference, wrong, logits, "bf16")
        assert check["clear_margin_disagreements"] == 1
        assert check["clear_margin_agreement"] == pytest.approx(17 / 18)
    assert check["max_abs_error_rel"] is None and check["logits_within_tolerance"] is None
    # fp32's threshold is 500x tighter: the same flips are errors there, and so is the noise.
    check = correctness.compare(reference, labels, noisy, "fp32")
    assert check["near_tie_fraction"] == 0.0 and check["clear_margin_disagreements"] == 6
    assert check["logits_within_tolerance"] is False
    # A wrong graph (classes shifted by one) fails both checks.
    shifted = np.roll(reference, 1, axis=1)
    check = correctness.compare(reference, shifted.argmax(1), shifted, "int8")
    assert check["clear_margin_agreement"] == 0.0 and check["logits_within_tolerance"] is False
    with pytest.raises(ValueError, match="'labels': expected shape"):
        correctness.compare(reference, labels[0], None, "fp32")
    with pytest.raises(ValueError, match="'precision': expected one of"):
        correctness.compare(reference, labels, None, "fp8")
    assert correctness.precision_of("segmenter_int8", {}) == "int8"
    assert (
        correctness.precision_of(
            "openvino_default", {"INFERENCE_PRECISION_HINT": "<Type: 'bfloat16'>"}
        )
        == "bf16"
    )
    assert (
        correctness.precision_of("openvino", {"INFERENCE_PRECISION_HINT": "<Type: 'float32'>"})
        == "fp32"
    )


def test_statistics_and_shapes():
    s = summarize([4.0, 1.0, 3.0, 2.0, 100.0], batch=2)
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"], s["min_ms"]) == (3.0, 100.0, 100.0, 1.0)
    assert s["images_per_s"] == pytest.approx(2000 / 3)
    assert parse_shape("512x1024") == (512, 1024)
    with pytest.raises(ValueError, match="expected HEIGHTxWIDTH like 512x1024, got '512'"):
        parse_shape("512")
    with pytest.raises(ValueError, match="expected at least one timing"):
        summarize([], 1)


def test_images_are_real_and_sized(tmp_path, camvid_root, real_image):
    images, source = load_images((40, 56), 3, root=camvid_root.parent)
    assert images.shape == (3, 40, 56, 3) and images.dtype == np.uint8
    assert source.startswith("real: ")
    # Pixels of real scenes, whatever the label says: neighbours are alike (random pixels'
    # correlation is ~0) and the CamVid frames are exactly the val images, resized.
    a = images.astype(np.float64)
    assert np.corrcoef(a[:, :, 1:].ravel(), a[:, :, :-1].ravel())[0, 1] > 0.8
    (tmp_path / "camvid" / "images").mkdir(parents=True)
    (tmp_path / "camvid" / "images" / "val").symlink_to(camvid_root / "images" / "val")
    frames, source = load_images((40, 56), 2, root=tmp_path)  # CamVid only: no demo frame
    assert source == "real: val"
    np.testing.assert_array_equal(frames, np.stack([real_image(i, (40, 56)) for i in (0, 1)]))
    # No images: an error naming the folder, never random pixels (tests/test_data_root.py).
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"bench: expected real images in '{empty}'"):
        load_images((8, 8), 1, root=empty)


def test_cli_quick_number(capsys):
    from ifa_rt.cli import main

    threads = torch.get_num_threads()
    try:
        code = main(
            [
                "bench",
                "camvid-lite0",
                "--shape",
                "64x96",
                "--batch",
                "2",
                "--reps",
                "2",
                "--threads",
                "1",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0 and "p50" in out and "images/s" in out and "first call" in out


def test_cli_rejects_bad_shape(capsys):
    from ifa_rt.cli import main

    assert main(["bench", "camvid-lite0", "--shape", "64by96"]) == 1  # the command refused it
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
