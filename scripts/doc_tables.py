#!/usr/bin/env python
"""Render the benchmark tables of the docs from their result files in docs/bench/.

A table in a doc stands between `<!-- table: NAME -->` and `<!-- /table -->`; NAME is a
result file `docs/bench/NAME.json` and says how to render it (`RENDERERS`). Without options
the docs are rewritten in place; `--check` only reports (exit 1) a table whose text differs
from its file, a marker without a file, or a renderer without a marker, so that no published
number can drift from the file it came from (tests/test_doc_tables.py runs it).

    .venv/bin/python scripts/doc_tables.py           # after a benchmark wrote a new JSON
    .venv/bin/python scripts/doc_tables.py --check
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "docs" / "bench"
DOCS = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md", REPO / "cpp" / "README.md"]
MARKER = re.compile(r"<!-- table: (?P<name>[\w.-]+) -->\n(?P<body>.*?)<!-- /table -->\n", re.S)

DEFAULTS_LABELS = {
    "default": '**`Segmenter("camvid", shapes=...)`, the defaults**',
    "openvino": "OpenVINO, no options (it picks its own precision)",
    "bf16": '`precision="bf16", runtime="aoti"`',
    "bf16_torchscript": '`precision="bf16", runtime="jit"`',
    "fp32_aoti": '`precision="fp32", runtime="aoti"`',
    "torch_compile": "torch.compile (inductor, freezing)",
    "openvino_f32": "OpenVINO, f32 hint",
    "onnxruntime": "ONNX Runtime, fp32",
    "fp32_torchscript": '`precision="fp32", runtime="jit"` (the portable TorchScript engine)',
}
PEERS = ("openvino", "openvino_f32", "onnxruntime", "torch_compile")
PEER_NAMES = {
    "openvino": "OpenVINO with no options",
    "openvino_f32": "OpenVINO f32",
    "onnxruntime": "ONNX Runtime",
    "torch_compile": "torch.compile",
}
PRECISION_LABELS = {
    "segmenter_aoti": "fp32 AOTI package",
    "segmenter_int8": "**int8 package**",
    "segmenter_bf16": "bf16 (TorchScript)",
    "openvino_default": "OpenVINO, no options",
    "openvino": "OpenVINO, f32 hint",
    "segmenter": "fp32 (TorchScript)",
}


def _engine(row: dict) -> str:
    """The runtime's own engine label; peers have none."""
    return "" if row["engine"] == row["variant"] else row["engine"]


def defaults(result: dict) -> str:
    """scripts/bench_defaults.py: every variant, then the goal ratios computed from the rows."""
    rows = result["rows"]
    lines = [
        "| variant | engine | p50 ms | p90 | p99 | labels = fp32 | mIoU |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = DEFAULTS_LABELS.get(r["variant"], r["variant"])
        p50 = f"**{r['p50_ms']:.1f}**" if r["variant"] == "default" else f"{r['p50_ms']:.1f}"
        lines.append(
            f"| {label} | {_engine(r)} | {p50} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{100 * r['agreement_with_fp32']:.2f} % | {r['miou']:.4f} |"
        )
    by = {r["variant"]: r for r in rows}
    exact = by["fp32_torchscript"]["miou"]
    near = [by[v] for v in PEERS if v in by and exact - by[v]["miou"] <= 0.005]
    fp32 = [by[v] for v in PEERS if v in by and by[v]["agreement_with_fp32"] == 1.0]
    best, best_fp32 = min(near, key=lambda r: r["p50_ms"]), min(fp32, key=lambda r: r["p50_ms"])
    lines += [
        "",
        f"Defaults: **{best['p50_ms'] / by['default']['p50_ms']:.2f}×** the fastest peer within "
        f"0.5 mIoU point of fp32 ({PEER_NAMES[best['variant']]}); exact fp32 (AOTI): "
        f"**{best_fp32['p50_ms'] / by['fp32_aoti']['p50_ms']:.2f}×** the fastest fp32 peer "
        f"({PEER_NAMES[best_fp32['variant']]}). Load {result['load_before'][0]:.2f} before, "
        f"{result['load_after'][0]:.2f} after; weights sha256 {result['weights_sha256'][:12]}….",
    ]
    return "\n".join(lines) + "\n"


def precision(result: dict) -> str:
    """scripts/bench/run.py precision variants: p50 and the ratio to the fp32 AOTI package."""
    ok = [r for r in result["results"] if r["status"] == "ok"]
    base = next(r for r in ok if r["variant"] == "segmenter_aoti")["p50_ms"]
    lines = [
        "| variant | batch | shape | p50 ms | p90 | × fp32 AOTI | labels = fp32 eager |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ok:
        agreement = r.get("label_agreement_vs_eager")
        lines.append(
            f"| {PRECISION_LABELS.get(r['variant'], r['variant'])} | {r['batch']} | "
            f"{r['height']}×{r['width']} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
            f"{base / r['p50_ms']:.2f} | "
            + ("–" if agreement is None else f"{100 * agreement:.2f} %")
            + " |"
        )
    start = result.get("loadavg_start") or [float("nan")]
    lines += ["", f"Load {start[0]:.2f} at the start; weights: {ok[0]['weights']}."]
    return "\n".join(lines + _correctness_lines(result)) + "\n"


PEER_LABELS = {"segmenter": "segmenter (TorchScript)", "segmenter_aoti": "**segmenter_aoti**"}
CORRECTNESS_NOTE = (
    "Labels = eager counts every pixel; with random weights many are near-ties, so it is no "
    "accuracy. The check for these weights (logits tolerance + labels on clear-margin pixels, "
    "`scripts/bench/correctness.py`) is not in this result file: rerun its command to add it. "
    "Measured runs of the check: the correctness tables of docs/benchmarks.md."
)


def peers(result: dict) -> str:
    """scripts/bench/run.py peers at batch 1 and 4: latency, ratio to the segmenter, images/s."""
    ok = [r for r in result["results"] if r["status"] == "ok"]
    by = {(r["variant"], r["batch"]): r for r in ok}
    lines = [
        "| variant | batch 1 p50 ms | p90 | p99 | × segmenter | batch 4 p50 ms | img/s "
        "| labels = eager |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in ok):
        one, four = by[(variant, 1)], by.get((variant, 4))
        agreement = one.get("label_agreement_vs_eager")
        lines.append(
            f"| {PEER_LABELS.get(variant, variant)} | {one['p50_ms']:.0f} | {one['p90_ms']:.0f} | "
            f"{one['p99_ms']:.0f} | {one['speedup_vs_segmenter']:.2f} | "
            + (f"{four['p50_ms']:.0f} | {four['images_per_s']:.2f}" if four else "– | –")
            + " | "
            + ("–" if agreement is None else _percent(agreement))
            + " |"
        )
    start = result.get("loadavg_start") or [float("nan")]
    lines += ["", f"Load {start[0]:.2f} at the start; weights: {ok[0]['weights']}."]
    return "\n".join(lines + _correctness_lines(result)) + "\n"


def _correctness_lines(result: dict) -> list[str]:
    """Under a timing table: its correctness check (rendered), or where to find one."""
    if any("correctness" in r for r in result["results"]):
        return ["", correctness(result).rstrip("\n")]
    if "random" in json.dumps(result.get("weights", {})):
        return ["", CORRECTNESS_NOTE]
    return []


def correctness(result: dict) -> str:
    """scripts/bench/run.py correctness records: logits error and clear-margin labels."""
    rows = [r for r in result["results"] if r["status"] == "ok" and "correctness" in r]
    lines = [
        "| variant | batch | computes in | tolerance e | mean / max \\|Δlogits\\| ÷ s "
        "| within e | near-ties excluded (margin ≤ 2e·s) | clear-margin labels = eager "
        "| all labels = eager |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["correctness"]
        err = (
            "–"
            if c["mean_abs_error_rel"] is None
            else f"{c['mean_abs_error_rel']:.2g} / {c['max_abs_error_rel']:.2g}"
        )
        within = {True: "yes", False: "**no**", None: "–"}[c["logits_within_tolerance"]]
        clear = c["clear_margin_agreement"]
        lines.append(
            f"| {PRECISION_LABELS.get(r['variant'], r['variant'])} | {r['batch']} | "
            f"{c['precision']} | {c['expected_error']:g} | {err} | {within} | "
            f"{100 * c['near_tie_fraction']:.2f} % | "
            + ("–" if clear is None else f"{_percent(clear)} ({c['clear_margin_disagreements']})")
            + f" | {_percent(r['label_agreement_vs_eager'])} |"
        )
    scale = sorted({f"{r['correctness']['logits_scale']:.3g}" for r in rows})
    shapes = sorted({f"{r['height']}×{r['width']}" for r in rows})
    lines += [
        "",
        f"`{result['command']}`: {', '.join(shapes)}, inputs {result.get('inputs', '–')}; "
        f"s = {', '.join(scale)} (rms of the eager fp32 logits); weights: {rows[0]['weights']}. "
        "In brackets: clear-margin pixels labelled otherwise.",
    ]
    return "\n".join(lines) + "\n"


def _percent(fraction: float) -> str:
    """99.999 % or 100 %: three decimals, trailing zeros dropped."""
    return f"{100 * fraction:.3f}".rstrip("0").rstrip(".") + " %"


def hostile(result: dict) -> str:
    """scripts/hostile_load.py: what the good clients got and what became of the hostile ones."""
    h, status, lat = result["hostile"], result["good_status"], result["good_latency_ms"]
    cut, rss = result["cut_after_s"], result["rss_mb"]
    answered = sum(status.values())
    lines = [
        "| measured | value |",
        "|---|---|",
        f"| load | {h['slow_headers']} slow-header + {h['slow_bodies']} slow-body + "
        f"{h['idle_keep_alive']} idle keep-alive connections, {result['good_clients']} clients "
        f"sending bursts of real frames, {result['seconds']:g} s |",
        f"| good requests answered | {answered}: {status.get('200', 0)} × 200, "
        f"{status.get('503', 0)} × busy 503, {result['unexpected_count']} other |",
        f"| latency of the 200s (p50 / p90 / p99) | {lat['p50']:.0f} / {lat['p90']:.0f} / "
        f"**{lat['p99']:.0f}** ms |",
        f"| slow bodies cut (408) | {cut['slow_body']['count']}, after "
        f"{cut['slow_body']['median']:g} s (median) |",
        f"| idle keep-alive closed | {cut['idle_keep_alive']['count']}, after "
        f"{cut['idle_keep_alive']['median']:g} s (median) |",
        f"| slow headers still open at the end | {result['held_to_end'].get('slow_headers', 0)} |",
        f"| service RSS before / peak / after | {rss['before']:.0f} / {rss['peak']:.0f} / "
        f"{rss['after']:.0f} MB (last half within {rss['last_half_range']:.0f} MB) |",
    ]
    host = result["host"]
    lines += [
        "",
        f"`{result['command']}` — {host['cpu']}, {host['usable_cores']} cores, load "
        f"{result['load_before'][0]:.2f} before; weights sha256 "
        f"{result['weights_sha256'][:12]}….",
    ]
    return "\n".join(lines) + "\n"


def shape_memory(result: dict) -> str:
    """scripts/shape_memory.py: RSS over many unplanned sizes, one row per shape_cache value."""
    low, high = result["megapixels"]
    lines = [
        "| `shape_cache` | RSS after warm-up → last, MB | growth after warm-up | spread over the "
        "last half | trims | ms per MP (median) | planned labels unchanged |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in result["results"].items():
        rss = r["rss_mb"]
        lines.append(
            f"| {name} | {rss[0]:.0f} → {rss[-1]:.0f} | {r['growth_mb']:.0f} MB | "
            f"{r['last_half_spread_mb']:.0f} MB | {r['heap_trims']} | "
            f"{r['median_ms_per_mp']:.0f} | " + ("yes" if r["same"] else "**no**") + " |"
        )
    lines += [
        "",
        f"{result['sizes']} distinct sizes of {low:g}–{high:g} MP, RSS every 10 sizes: "
        f"`{result['command']}`.",
    ]
    return "\n".join(lines) + "\n"


RENDERERS: dict[str, Callable[[dict], str]] = {
    "defaults-camvid-360x480": defaults,
    "precision-cityscapes-r50-512x1024": precision,
    "hostile-load-camvid-360x480": hostile,
    "peers-cityscapes-r50-512x1024": peers,
    "shape-memory-camvid": shape_memory,
    "correctness-cityscapes-r50-256x512": correctness,
    "correctness-cityscapes-r50-512x1024": correctness,
}


def render(text: str, problems: list[str], where: str) -> str:
    """`text` with every marked table re-rendered from its file (problems collected)."""

    def one(match: re.Match) -> str:
        name = match["name"]
        source = BENCH / f"{name}.json"
        if name not in RENDERERS or not source.is_file():
            problems.append(f"{where}: table '{name}' has no result file or renderer")
            return match[0]
        body = RENDERERS[name](json.loads(source.read_text()))
        if body != match["body"]:
            problems.append(f"{where}: table '{name}' differs from docs/bench/{name}.json")
        return f"<!-- table: {name} -->\n{body}<!-- /table -->\n"

    return MARKER.sub(one, text)


MEASURED = re.compile(r"\d(?:\.\d+)? ?(?:ms|%|MB|MiB|GB|img/s)\b|\d\.\d+[×x](?![\d\w])")
# A header naming a unit makes its table's bare numbers measurements ("| p50 ms |", "| 17.1 |").
UNIT_HEADER = re.compile(r"\b(?:ms|MB|MiB|GB|img/s|images/s)\b")
# Tables of measurements outside the markers, each with why it has no result file; a new one
# fails --check until it is rendered from docs/bench/ or listed here with its reason.
UNRENDERED = {
    ("docs/reliability.md", "| | run A: Static Runtime | run B: JIT + optimize_for_inference |"): (
        "historical soak runs A and B (2026-11-25): commits and command given beside it; their "
        "out/soak.json files were not kept"
    ),
    (
        "docs/reliability.md",
        "| run | target (sanitizers) | budget | executions | coverage | result |",
    ): (
        "fuzzing runs of 2026-11-25: libFuzzer's own logs, not kept; every crashing input is in "
        "fuzz/regressions/ and replayed by make test"
    ),
    (
        "docs/serving.md",
        "| callers N | mode | requests | p50 ms | p90 ms | p99 ms | images/s | mean batch "
        "| vs direct |",
    ): (
        "scripts/load_test.py runs of 2026-11-25 (72x96 and 360x480) on 2 cores shared with a "
        "training job, as stated beside them, command beside each; their --json was not kept"
    ),
    (
        "docs/serving.md",
        "| callers N | mode | requests | p50 ms | p90 ms | p99 ms | images/s | vs direct |",
    ): (
        "scripts/load_test.py --modes direct,http run of 2026-11-25, same machine and load; "
        "command beside it; its --json was not kept"
    ),
}


def unrendered_tables(text: str, where: str) -> list[str]:
    """Problems: tables of measurements outside any marker and not listed in UNRENDERED."""
    outside = MARKER.sub("", text)
    problems, table = [], []
    for line in [*outside.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        unit_numbers = UNIT_HEADER.search(table[0]) if table else None
        rows = table[2:]
        if rows and (
            any(MEASURED.search(row) for row in rows)
            or (unit_numbers and any(re.search(r"\| *\d", row) for row in rows))
        ):
            if (where, table[0]) not in UNRENDERED:
                problems.append(f"{where}: table '{table[0][:60]}' has measurements but no source")
        table = []
    return problems


def main() -> int:
    """Rewrite (or --check) every marked table; exit 1 when --check finds a difference."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report differences, write nothing")
    args = parser.parse_args()
    problems: list[str] = []
    seen: set[str] = set()
    for doc in DOCS:
        text = doc.read_text()
        seen |= {m["name"] for m in MARKER.finditer(text)}
        where = doc.relative_to(REPO).as_posix()
        rendered = render(text, problems, where)
        problems += unrendered_tables(rendered, where)
        if rendered != text and not args.check:
            doc.write_text(rendered)
    problems += [f"renderer '{name}' has no table in the docs" for name in set(RENDERERS) - seen]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
