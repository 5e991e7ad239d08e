#!/usr/bin/env python
"""The last line of `make test`: what passed and, above all, what was skipped and why.

Reads the JUnit files pytest and ctest wrote into the report folder, and the outcome file the
CUDA compile check left there (`cuda-check.passed` or `cuda-check.skipped`, with its reason).

    python scripts/test_summary.py build/test-report
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path


def junit(path: Path) -> tuple[Counter, Counter]:
    """(outcome counts, skip reasons) of one JUnit XML file."""
    outcomes: Counter = Counter()
    reasons: Counter = Counter()
    if not path.is_file():
        outcomes["missing"] += 1
        return outcomes, reasons
    for case in ET.parse(path).getroot().iter("testcase"):
        skipped = case.find("skipped")
        if skipped is not None:
            outcomes["skipped"] += 1
            text = skipped.get("message") or skipped.text or "no reason given"
            # pytest writes "<file>:<line>: <reason>"; the reason is what a reader needs.
            reasons[text.rsplit(": ", 1)[-1].strip()] += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"] += 1
        else:
            outcomes["passed"] += 1
    return outcomes, reasons


def describe(name: str, outcomes: Counter, reasons: Counter) -> str:
    """'pytest 410 passed, 9 skipped (9 × needs a CUDA device)'."""
    if outcomes["missing"]:
        return f"{name}: no report"
    parts = [f"{outcomes[k]} {k}" for k in ("passed", "failed", "skipped") if outcomes[k]]
    text = f"{name} " + ", ".join(parts or ["0 tests"])
    if reasons:
        text += " (" + "; ".join(f"{n} × {r}" for r, n in reasons.most_common()) + ")"
    return text


def cuda_check(report: Path) -> str:
    """The CUDA compile check's outcome, from the file it left."""
    skipped = report / "cuda-check.skipped"
    if skipped.is_file():
        return f"cuda-check SKIPPED ({skipped.read_text().strip()})"
    if (report / "cuda-check.passed").is_file():
        return "cuda-check compiled the CUDA engine and passed"
    return "cuda-check: no outcome recorded"


def main() -> int:
    """Print the one-line summary; exit 0 (the steps before already failed `make` if red)."""
    report = Path(sys.argv[1] if len(sys.argv) > 1 else "build/test-report")
    pieces = [
        describe("pytest", *junit(report / "pytest.xml")),
        describe("ctest", *junit(report / "ctest.xml")),
        cuda_check(report),
    ]
    print("make test: " + " | ".join(pieces))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
