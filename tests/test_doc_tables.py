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


def test_a_table_of_measurements_without_a_source_is_caught():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import doc_tables
    finally:
        sys.path.pop(0)
    typed = "| variant | p50 |\n|---|---|\n| ours | 12.5 ms |\n\nprose\n"
    assert doc_tables.unrendered_tables(typed, "x.md") == [
        "x.md: table '| variant | p50 |' has measurements but no source"
    ]
    # The same table between markers is a rendering, and a table of limits is no measurement.
    assert (
        doc_tables.unrendered_tables(f"<!-- table: t -->\n{typed}<!-- /table -->\n", "x.md") == []
    )
    limits = "| limit | default |\n|---|---|\n| --max-pixels | 4096×4096 |\n"
    assert doc_tables.unrendered_tables(limits, "x.md") == []
    # Bare numbers under a header that names the unit, and ASCII ratios, are measurements too.
    bare = "| callers | p50 ms |\n|---|---|\n| 1 | 16.7 |\n"
    assert doc_tables.unrendered_tables(bare, "x.md") == [
        "x.md: table '| callers | p50 ms |' has measurements but no source"
    ]
    ratio = "| callers | vs direct |\n|---|---|\n| 2 | 1.21x |\n"
    assert len(doc_tables.unrendered_tables(ratio, "x.md")) == 1
    assert REPO / "cpp" / "README.md" in doc_tables.DOCS


def test_correctness_table_renders_the_check():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import doc_tables
    finally:
        sys.path.pop(0)
    check = {
        "precision": "int8",
        "expected_error": 0.15,
        "logits_scale": 0.5,
        "near_tie_fraction": 0.25,
        "clear_margin_disagreements": 2,
        "clear_margin_agreement": 0.999,
        "mean_abs_error_rel": 0.04,
        "max_abs_error_rel": 0.3,
        "logits_within_tolerance": True,
    }
    record = {
        "variant": "segmenter_int8",
        "status": "ok",
        "batch": 1,
        "height": 8,
        "width": 16,
        "weights": "random",
        "label_agreement_vs_eager": 0.9,
        "correctness": check,
    }
    result = {"command": "run.py x", "inputs": "real: x", "results": [record]}
    row = doc_tables.correctness(result).splitlines()[2]
    assert row == (
        "| **int8 package** | 1 | int8 | 0.15 | 0.04 / 0.3 | yes | 25.00 % | 99.9 % (2) | 90 % |"
    )
    # Under a timing table of random weights without the check: where to find it.
    assert doc_tables._correctness_lines({"results": [], "weights": {"all": "random (x)"}}) == [
        "",
        doc_tables.CORRECTNESS_NOTE,
    ]
