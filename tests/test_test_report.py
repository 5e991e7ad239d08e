"""`make test` reports skipped steps as skipped, with their reasons (scripts/test_summary.py,
scripts/cuda_compile_check.sh)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _summary(report: Path) -> str:
    run = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "test_summary.py"), str(report)],
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.strip()


def test_summary_counts_outcomes_and_groups_skip_reasons(tmp_path):
    (tmp_path / "pytest.xml").write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase name="a"/><testcase name="b"/>'
        '<testcase name="c"><skipped message="tests/x.py:9: needs a CUDA device"/></testcase>'
        '<testcase name="d"><skipped message="tests/y.py:3: needs a CUDA device"/></testcase>'
        '<testcase name="e"><skipped message="CamVid data not found"/></testcase>'
        "</testsuite></testsuites>"
    )
    (tmp_path / "ctest.xml").write_text(
        '<testsuite><testcase name="options" status="run"/><testcase name="alloc"/></testsuite>'
    )
    (tmp_path / "cuda-check.skipped").write_text("no nvcc at /usr/local/cuda-13.0\n")
    assert _summary(tmp_path) == (
        "make test: pytest 2 passed, 3 skipped (2 × needs a CUDA device; 1 × CamVid data not "
        "found) | ctest 2 passed | cuda-check SKIPPED (no nvcc at /usr/local/cuda-13.0)"
    )


def test_summary_says_when_a_report_is_missing(tmp_path):
    assert _summary(tmp_path) == (
        "make test: pytest: no report | ctest: no report | cuda-check: no outcome recorded"
    )


def test_skipped_cuda_check_is_recorded_as_skipped(tmp_path):
    env = {**os.environ, "IFA_RT_SKIP_CUDA_CHECK": "1", "IFA_RT_TEST_REPORT": str(tmp_path)}
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "cuda_compile_check.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "SKIPPED: IFA_RT_SKIP_CUDA_CHECK is set" in run.stderr
    assert (tmp_path / "cuda-check.skipped").read_text() == "IFA_RT_SKIP_CUDA_CHECK is set\n"
    assert not (tmp_path / "cuda-check.passed").exists()
