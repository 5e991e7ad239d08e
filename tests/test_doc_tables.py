"""Every benchmark table in the docs is the rendering of its result file in docs/bench/
(scripts/doc_tables.py): a number edited by hand, or a result file rerun without re-rendering
the docs, fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "doc_tables.py"


def test_docs_tables_match_their_result_files():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr


def test_a_hand_edited_number_is_caught():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import doc_tables
    finally:
        sys.path.pop(0)
    doc = (REPO / "docs" / "benchmarks.md").read_text()
    table = doc.split("<!-- table: defaults-camvid-360x480 -->\n", 1)[1]
    edited = doc.replace(table.split("\n")[2], table.split("\n")[2].replace("|", "| 1", 1), 1)
    problems: list[str] = []
    doc_tables.render(edited, problems, "benchmarks.md")
    assert problems == [
        "benchmarks.md: table 'defaults-camvid-360x480' differs from "
        "docs/bench/defaults-camvid-360x480.json"
    ]
    problems.clear()
    doc_tables.render("<!-- table: nowhere -->\n| x |\n<!-- /table -->\n", problems, "x.md")
    assert problems == ["x.md: table 'nowhere' has no result file or renderer"]
