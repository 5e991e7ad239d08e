"""The prepared GPU check (scripts/gpu_check.sh): its dry run on the CPU proves the deadline
path with a fake clock, its preflight stops within seconds without the carried .gl/ folder,
and its helpers cannot pass vacuously (no frames, errors in worker threads)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
sys.path.insert(0, str(SCRIPTS))

import gpu_check_common  # noqa: E402
import gpu_check_report  # noqa: E402

# The dry run's steps in order of value (scripts/gpu_check.py `steps`), between the shell's.
ORDER = [
    "preflight",
    "build",
    "environment",
    "export",
    "latency",
    "accuracy",
    "capture_failure",
    "device_memory",
    "threads",
    "overlap",
    "eager",
    "fuser",
    "aoti",
    "torch_compile",
    "ctest",
]


def _has_fuser_option() -> bool:
    import inspect

    from ifa_rt import Segmenter

    return "fuser" in inspect.signature(Segmenter).parameters


def _run(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(
        ["bash", str(SCRIPTS / "gpu_check.sh"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_dry_run_records_every_step_and_skips_after_the_fake_deadline(tmp_path, camvid_root):
    out = tmp_path / "out"
    # Every step takes 40 s of a 480 s deadline: step 11 (AOTI, needs ~150 s) finds < 40 s
    # left, step 12 (torch.compile) finds the deadline passed; the first ten really run.
    env = {
        "IFA_RT_DATA": str(camvid_root.parent),
        "GPU_CHECK_DEADLINE_S": "480",
        "GPU_CHECK_ARGS": "--fake-clock 40",
    }
    run = _run(["--dry-run", str(out)], env, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert [p.name for p in files] == ["gpu_check.jsonl", "gpu_check.md"]
    assert all(p.stat().st_size < 1 << 20 for p in files)
    lines = [json.loads(x) for x in (out / "gpu_check.jsonl").read_text().splitlines()]
    facts = [x for x in lines if x["record"] == "facts"]
    assert len(facts) == 1 and facts[0]["dry_run"] is True and facts[0]["fake_clock_s"] == 40
    steps = [x for x in lines if x["record"] == "step"]
    assert [s["key"] for s in steps] == ORDER
    by = {s["key"]: s for s in steps}
    # Skipped is never passed: what the CPU cannot run, and what the deadline left out.
    skipped = {k: s["skipped"] for k, s in by.items() if s["ok"] is None}
    # The shell hands the Python steps what is left of 480 s after its preflight.
    deadline = facts[0]["deadline_s"]
    assert 450 < deadline <= 480
    assert skipped == {
        "build": "dry run: the installed build, no CUDA build",
        "capture_failure": "the dry run has no CUDA graphs to capture",
        "aoti": f"deadline: needs ~150 s, {deadline - 440} s left of {deadline}",
        "torch_compile": f"deadline: 480 s of {deadline}",
        "ctest": "dry run: make test runs ctest",
        **({} if _has_fuser_option() else {"fuser": "this tree's Segmenter has no fuser option"}),
    }, skipped
    assert all(s["ok"] is True for k, s in by.items() if k not in skipped), [
        s for s in steps if s["ok"] is False
    ]
    assert "skipped steps: [" in run.stdout and "failed steps: none" in run.stdout

    latency = by["latency"]["rows"]
    assert [(r["engine"], r["batch"]) for r in latency] == [
        (f"Segmenter {p}", b) for p in ("fp16", "bf16") for b in (1, 2)
    ]
    assert all(r["allocations_after_warmup"] == 0 and r["p50_ms"] > 0 for r in latency)
    assert {g["met"] for g in by["latency"]["goals"]} == {"n/a (dry run)"}
    accuracy = by["accuracy"]["rows"]
    assert {(r["model"], r["precision"], r["images"]) for r in accuracy} == {
        (m, p, 2) for m in ("camvid", "r50") for p in ("fp32", "fp16", "bf16")
    }
    assert all(r["gate"].startswith(">=") for r in accuracy if r["model"] == "camvid")
    device_io = by["device_memory"]["note"]
    assert "device call refused: Segmenter.segment_on_device: option 'device'" in device_io
    assert "0 problems" in by["threads"]["note"]
    overlap = by["overlap"]["rows"]
    assert [r["mode"] for r in overlap] == ["1 thread", "2 threads", "Batcher (submit)"]
    assert all(r["images_per_s"] > 0 for r in overlap)
    eager = by["eager"]["rows"]
    assert [(r["engine"], r["tf32"]) for r in eager[::2]] == [
        ("eager fp32, TF32 on", "on"),
        ("eager fp32, TF32 off", "off"),
        ("eager fp16 autocast", "on"),
    ]
    assert len(by["eager"]["goals"]) == 2
    if _has_fuser_option():
        fuser = [(r["fuser"], r["batch"]) for r in by["fuser"]["rows"]]
        assert fuser == [("auto", 1), ("auto", 2), ("off", 1), ("off", 2)]
    markdown = (out / "gpu_check.md").read_text()
    assert markdown.startswith("# GPU check (DRY RUN on CPU)") and "| p50_ms |" in markdown
    assert "| torch.compile fp16, batch 1 | skipped |" in markdown


def test_preflight_stops_within_seconds_without_the_carried_folder(tmp_path):
    out, stage = tmp_path / "out", tmp_path / "empty-stage"
    stage.mkdir()
    t0 = time.monotonic()
    # No ../shared fallback: IFA_RT_DATA is ignored by the real run, only the stage counts.
    env = {"GPU_CHECK_STAGE": str(stage), "IFA_RT_DATA": str(REPO.parent / "shared" / "data")}
    run = _run([str(out)], env, timeout=60)
    assert time.monotonic() - t0 < 20
    assert run.returncode == 2, run.stdout + run.stderr
    for what in ("nlohmann/json.hpp", "whl/tqdm-*.whl", "camvid/images/val", "demo_frankfurt"):
        assert what in run.stdout, run.stdout
    assert "Run scripts/gpu_check.sh --prepare here and carry .gl" in run.stdout
    lines = [json.loads(x) for x in (out / "gpu_check.jsonl").read_text().splitlines()]
    assert [(x["step"], x["ok"]) for x in lines] == [("preflight", False)]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.jsonl", "gpu_check.md"]


def test_dry_run_preflight_refuses_a_data_folder_without_frames(tmp_path):
    run = _run(["--dry-run", str(tmp_path / "out")], {"IFA_RT_DATA": str(tmp_path)}, 60)
    assert run.returncode == 2 and "3 frames in" in run.stdout, run.stdout + run.stderr


def test_report_runs_steps_against_the_deadline_and_appends_each(tmp_path):
    report = gpu_check_report.Report(tmp_path, 35, clock=gpu_check_report.FakeClock(10))

    def fails():
        raise gpu_check_report.StepFailed("goal missed", rows=[{"a": 1}])

    def cannot():
        raise gpu_check_report.StepSkipped("no CUDA here")

    assert report.step("a", "first", lambda: {"note": "ran"}) is not None  # at 10 s
    assert report.step("b", "second", fails) is None  # at 20 s
    assert report.step("c", "third", cannot) is None  # at 30 s
    assert report.step("d", "fourth", lambda: {}, needs_s=10) is None  # at 40 s
    lines = [json.loads(x) for x in (tmp_path / "gpu_check.jsonl").read_text().splitlines()]
    assert [(x["key"], x["ok"]) for x in lines] == [
        ("a", True),
        ("b", False),
        ("c", None),
        ("d", None),
    ]
    assert lines[1]["error"] == "StepFailed: goal missed" and lines[1]["rows"] == [{"a": 1}]
    assert lines[2]["skipped"] == "no CUDA here"
    assert lines[3]["skipped"] == "deadline: 40 s of 35"
    early = gpu_check_report.Report(tmp_path / "2", 35, clock=gpu_check_report.FakeClock(10))
    assert early.step("e", "needs more", lambda: {}, needs_s=30) is None  # 25 s left
    assert early.steps[0]["skipped"] == "deadline: needs ~30 s, 25 s left of 35"
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "| second | **FAILED** |" in markdown and "| fourth | skipped |" in markdown
    chosen = gpu_check_report.Report(tmp_path / "3", 35, only={"b"})
    assert chosen.step("a", "left out", lambda: {}) is None
    assert chosen.step("b", "chosen", lambda: {}) is not None
    assert chosen.steps[0]["skipped"] == "not selected (GPU_CHECK_ONLY=b)"


def test_hammer_reports_exceptions_raised_in_worker_threads():
    images = [np.zeros((4, 4, 3), np.uint8)]
    serial = [True]

    def breaks_in_threads(image):
        if serial[0]:
            serial[0] = False
            return image[..., 0]
        return 1 // 0  # the error that once died unseen in a worker

    problems = gpu_check_common.hammer(breaks_in_threads, images, threads=3, calls=2)
    assert len(problems) == 3 and all("ZeroDivisionError" in p for p in problems), problems
    wrong = iter(range(1000))
    problems = gpu_check_common.hammer(lambda im: np.full(2, next(wrong)), images, 2, 2)
    assert len(problems) == 4 and "other labels than serial" in problems[0]
    assert gpu_check_common.hammer(lambda im: im[..., 0], images, 4, 3) == []


def test_frames_and_agreement_refuse_to_be_vacuous(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected 2 frames .* found 0"):
        gpu_check_common.load_images(tmp_path, (8, 8), 2)
    with pytest.raises(ValueError, match="non-empty"):
        gpu_check_common.agreement([], [])
    a = np.zeros((2, 2), np.uint8)
    assert gpu_check_common.agreement([a], [a + np.eye(2, dtype=np.uint8)]) == 0.5


def test_helpers_never_import_the_main_script():
    for path in SCRIPTS.glob("gpu_check_*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "gpu_check" not in names, path.name
        assert len(path.read_text().splitlines()) < 400, path.name
