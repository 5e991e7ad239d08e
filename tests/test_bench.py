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
from ifa_rt.bench import load_images, parse_shape, script_path, summarize
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
        import measure
        import report

        yield measure, report
    finally:
        sys.path.remove(str(BENCH))
        for name in ("measure", "report"):  # generic names: do not leave them to other tests
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
    _, report = bench_modules
    assert report.main([str(prefix.with_name("tiny.json")), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r.md").read_text() == report.markdown(res)


def test_rounds_rotate_and_failures_are_recorded(bench_modules):
    measure, _ = bench_modules
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

    assert script_path() == BENCH / "run.py" and script_path().is_file()  # `--full` runs it
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
