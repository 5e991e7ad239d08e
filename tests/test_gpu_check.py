"""scripts/gpu_check.sh --dry-run: the prepared GPU check runs every step on the CPU, so the
script a scarce GPU machine gets has already worked end to end (only CUDA steps differ)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_dry_run_passes_or_skips_every_step_and_writes_both_reports(tmp_path, camvid_root):
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "IFA_RT_DATA": str(camvid_root.parent)}
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["facts"]["dry_run"] is True
    steps = {s["step"]: s for s in report["steps"]}
    assert all(s["ok"] is not False for s in steps.values()), [
        s for s in steps.values() if s["ok"] is False
    ]
    assert len(steps) == 10
    # What cannot run on the CPU is reported as skipped, never as passed.
    skipped = {name: s["skipped"] for name, s in steps.items() if s["ok"] is None}
    assert skipped == {"forced capture failure": "the dry run has no CUDA graphs to capture"}
    assert "skipped steps: ['forced capture failure']" in run.stdout
    accuracy = steps["labels vs CPU fp32, allocations after warm-up"]["rows"]
    assert {(r["model"], r["precision"]) for r in accuracy} == {
        (m, p) for m in ("camvid", "r50") for p in ("fp32", "fp16", "bf16")
    }
    assert all(r["allocations_after_warmup"] == 0 for r in accuracy)
    latency = steps["latency vs eager and torch.compile"]["rows"]
    assert {r["engine"] for r in latency} >= {"Segmenter fp32", "Segmenter bf16", "eager fp32"}
    device_io = steps["device-memory I/O: CUDA tensors in and out"]["note"]
    assert "device call refused: Segmenter.segment_on_device: option 'device'" in device_io
    overlap = steps["staging overlapped with compute: 1 vs 2 threads, Batcher"]["rows"]
    assert [r["mode"] for r in overlap] == ["1 thread", "2 threads", "Batcher (submit)"]
    assert all(r["images_per_s"] > 0 for r in overlap)
    markdown = (out / "gpu_check.md").read_text()
    assert markdown.startswith("# GPU check (DRY RUN on CPU)") and "| p50_ms |" in markdown
    assert "| forced capture failure | skipped |" in markdown
