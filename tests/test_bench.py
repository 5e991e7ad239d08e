"""The latency benchmark (scripts/bench_latency.py) and `ifa-rt bench`: schema, not speed."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ifa_rt.bench import load_images, parse_shape, percentile, script_path, summarize

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# One cell keeps this under ~10 s: every burst variant starts a fresh process per burst.
TINY = ["--preset", "camvid-lite0", "--shapes", "64x96", "--batches", "1", "--reps", "2",
        "--threads", "1"]
RECORD_KEYS = {"variant", "precision", "batch", "height", "width", "status", "reps", "p50_ms",
               "p90_ms", "p99_ms", "mean_ms", "images_per_s", "speedup_vs_reference",
               "gflops_per_s", "peak_fraction", "ms", "label_agreement_vs_fp32_reference"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_latency")


@pytest.fixture(scope="module")
def result(bench, tmp_path_factory):
    """One tiny interleaved run of every default variant (no probes), with its output files."""
    if bench.find_bench_tool() is None:
        pytest.skip("ifa-rt-bench is not built")
    prefix = tmp_path_factory.mktemp("bench") / "tiny"
    threads = torch.get_num_threads()
    try:
        assert bench.main([*TINY, "--no-probe", "--out", str(prefix)]) == 0
    finally:
        torch.set_num_threads(threads)
    return prefix, json.loads(prefix.with_name("tiny.json").read_text())


def test_every_variant_produced_numbers(bench, result):
    _, res = result
    assert res["schema"] == bench.SCHEMA
    for key in ("command", "created_utc", "host", "loadavg_start", "loadavg_end",
                "training_running", "config", "matmul_peak_gflops", "gmacs_per_image"):
        assert key in res, key
    assert res["matmul_peak_gflops"]["fp32"] > 0
    macs = res["gmacs_per_image"]["64x96"]
    assert 0 < macs["fused"] < macs["reference"]  # the decomposed head does less work
    for variant in bench.DEFAULT_VARIANTS:
        [rec] = [r for r in res["results"] if r["variant"] == variant]
        assert rec["status"] == "ok", rec.get("reason")
        assert RECORD_KEYS <= set(rec), RECORD_KEYS - set(rec)
        assert len(rec["ms"]) == rec["reps"] == 2 and min(rec["ms"]) > 0
        assert rec["p50_ms"] <= rec["p90_ms"] <= rec["p99_ms"]
        assert rec["gflops_per_s"] > 0 and rec["speedup_vs_reference"] > 0
        if variant not in bench.BURST_VARIANTS:  # timed in other processes
            assert rec["label_agreement_vs_fp32_reference"] >= 0.99


def test_outputs_written(result):
    prefix, res = result
    for suffix in (".md", "-latency.png", "-speedup.png"):
        assert prefix.with_name("tiny" + suffix).stat().st_size > 0
    table = prefix.with_name("tiny.md").read_text()
    assert table.count("| segmenter | fp32 |") == 1 and res["command"] in table


@pytest.fixture(scope="module")
def ctx(bench, tmp_path_factory):
    """A benchmark context with the tiny preset's weights and artifact written once."""
    context = bench.Context("camvid-lite0", "cpu", 1, tmp_path_factory.mktemp("ctx"))
    context.save_state()
    context.artifact()
    return context


@pytest.mark.parametrize("variant", ["segmenter", "cpp_bench"])
def test_probes_report_first_call_and_peak_rss(bench, ctx, variant):
    tool = bench.find_bench_tool()
    if tool is None:
        pytest.skip("ifa-rt-bench is not built")
    rec = bench.probe_record(ctx, bench.parse_args(TINY), variant, "fp32", (64, 96), 1, tool)
    assert rec["status"] == "ok", rec.get("reason")
    assert rec["first_call_ms"] > 0 and rec["setup_s"] > 0
    assert rec["peak_rss_mib"] > 50  # libtorch alone is bigger than this


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tool_bursts_give_back_every_sample(bench, n):
    rng = random.Random(n)
    for _ in range(20):
        samples = [rng.uniform(1, 100) for _ in range(n)]
        got = bench.burst_samples(n, percentile(samples, 0.5), percentile(samples, 0.9),
                                  sum(samples) / n)
        assert np.allclose(sorted(got), sorted(samples))


def test_statistics_and_shapes():
    s = summarize([4.0, 1.0, 3.0, 2.0, 100.0], batch=2)
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"], s["min_ms"]) == (3.0, 100.0, 100.0, 1.0)
    assert s["images_per_s"] == pytest.approx(2000 / 3)
    assert parse_shape("512x1024") == (512, 1024)
    with pytest.raises(ValueError, match="expected HEIGHTxWIDTH like 512x1024, got '512'"):
        parse_shape("512")
    with pytest.raises(ValueError, match="expected at least one timing"):
        summarize([], 1)


def test_images_are_real_and_sized(tmp_path):
    images, source = load_images((40, 56), 3)
    assert images.shape == (3, 40, 56, 3) and images.dtype == np.uint8
    assert source.startswith(("real", "random"))
    fallback, source = load_images((8, 8), 1, root=tmp_path)
    assert source == "random" and fallback.shape == (1, 8, 8, 3)


def test_cli_quick_number(ctx, capsys):
    from ifa_rt.cli import main

    assert script_path().is_file()
    artifact = ctx.artifact()
    threads = torch.get_num_threads()
    try:
        code = main(["bench", str(artifact), "--shape", "64x96", "--batch", "2", "--reps", "2",
                     "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0 and "p50" in out and "images/s" in out and "first call" in out


def test_cli_rejects_bad_shape(capsys):
    from ifa_rt.cli import main

    assert main(["bench", "camvid-lite0", "--shape", "64by96"]) == 2
    assert "expected HEIGHTxWIDTH" in capsys.readouterr().err
