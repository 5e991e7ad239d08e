#!/usr/bin/env python
"""Outputs of a benchmark result: JSON, a markdown table and two PNG plots.

    .venv/bin/python scripts/bench/report.py docs/bench/camvid-lite0-cpu.json
regenerates <prefix>.md, <prefix>-latency.png (p50 per call, whisker to p90, per variant and
batch) and <prefix>-speedup.png (segmenter p50 / variant p50, per cell) from a result JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "plot", "write"]


def _ok(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured records, in table order: shape, batch, then the configured variant order."""
    order = result["config"]["variants"]
    rank = {v: i for i, v in enumerate(order)}
    rows = [r for r in result["results"] if r["status"] == "ok"]
    return sorted(
        rows,
        key=lambda r: (r["height"] * r["width"], r["batch"], rank.get(r["variant"], len(order))),
    )


def _f(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _busy(result: dict[str, Any]) -> str:
    """A warning when another job used the CPU as the run started (the VM is shared).

    With T OpenMP threads on T cores, one busy core stalls every parallel region's barrier:
    torch-based variants then slow down many times more than ONNX Runtime or OpenVINO.
    """
    load, cores = result.get("loadavg_start"), result["host"].get("usable_cores") or 1
    if load and load[0] > 0.5 and load[0] + result["config"]["threads"] > cores:
        return f" — **busy machine** (1-min load {load[0]} at start): ratios are unreliable"
    return ""


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown section: the run's context, then one row per measured record."""
    host, cfg, v = result["host"], result["config"], result["host"]["versions"]
    rounds = ", ".join(str(r) for r in sorted(set(cfg["reps"])))  # per shape
    weights = "; ".join(f"{k}: {w}" for k, w in result["weights"].items())
    lines = [
        f"`{result['command']}` — {result['created_utc']}",
        "",
        f"- host: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa']) or 'no AVX'}; "
        f"AMX: {'yes' if host['amx'] else 'no'}); torch {v['torch']}, onnxruntime "
        f"{v.get('onnxruntime') or '–'}, openvino {v.get('openvino') or '–'}, ifa_rt {v['ifa_rt']}",
        f"- model {cfg['preset']}; weights: {weights}",
        f"- fp32, {cfg['threads']} threads, {rounds} interleaved rounds after "
        f"{cfg['warmup']} warm-up call(s); inputs: {result.get('inputs', '–')}",
        f"- load average {result['loadavg_start']} → {result['loadavg_end']}{_busy(result)}",
        "- clear-margin labels: on pixels whose eager top-2 margin exceeds 2e·s (e: the "
        "precision's expected logit error, s: the eager logits' rms; scripts/bench/"
        "correctness.py), in brackets the near-ties left out",
        "",
        "| variant | batch | shape | p50 ms | p90 ms | p99 ms | img/s | × segmenter "
        "| first call ms | labels = eager | clear-margin labels = eager (near-ties) "
        "| mean \\|Δlogits\\| ÷ s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _ok(result):
        agree, check = r["label_agreement_vs_eager"], r.get("correctness") or {}
        clear = check.get("clear_margin_agreement")
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['height']}×{r['width']} | {r['p50_ms']:.1f} "
            f"| {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['images_per_s']:.2f} "
            f"| {_f(r['speedup_vs_segmenter'], '.2f')} | {r['first_call_ms']:.0f} "
            f"| {'–' if agree is None else f'{100 * agree:.3f} %'} "
            + (
                "| – "
                if clear is None
                else f"| {100 * clear:.3f} % ({100 * check['near_tie_fraction']:.2f} %) "
            )
            + f"| {_f(check.get('mean_abs_error_rel'), '.2g')} |"
        )
    notes = sorted(
        {
            f"- {r['variant']} ({r['height']}×{r['width']}): {r['status']}: {r['reason']}"
            for r in result["results"]
            if r["status"] != "ok"
        }
    )
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def plot(result: dict[str, Any], prefix: Path) -> list[Path]:
    """Write the latency and speed-up PNGs next to `prefix`; return their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark machine
    import matplotlib.pyplot as plt

    ok = _ok(result)
    variants = [v for v in result["config"]["variants"] if any(r["variant"] == v for r in ok)]
    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    cells = list(dict.fromkeys((r["height"], r["width"], r["batch"]) for r in ok))
    cfg = result["config"]
    title = f"{cfg['preset']}, fp32, {cfg['threads']} threads"
    width = 0.8 / max(len(variants), 1)
    paths = []
    for kind in ("latency", "speedup"):
        fig, ax = plt.subplots(figsize=(max(6.0, 1.5 * len(cells) + 2.5), 4))
        for i, v in enumerate(variants):
            rows = {(r["height"], r["width"], r["batch"]): r for r in ok if r["variant"] == v}
            xs = [
                j + (i - (len(variants) - 1) / 2) * width for j, c in enumerate(cells) if c in rows
            ]
            got = [rows[c] for c in cells if c in rows]
            if kind == "latency":
                ys = [r["p50_ms"] for r in got]
                err = [[0] * len(got), [r["p90_ms"] - r["p50_ms"] for r in got]]
                bars = ax.bar(xs, ys, width, yerr=err, capsize=2, color=colors[v], label=v)
                ax.bar_label(bars, fmt="%.0f", fontsize=6, padding=2)
            else:
                ys = [r["speedup_vs_segmenter"] or 0.0 for r in got]
                bars = ax.bar(xs, ys, width, color=colors[v], label=v)
                ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2)
        if kind == "latency":
            ax.set(
                ylabel="p50 ms per call (whisker: p90)", yscale="log", title=f"Latency — {title}"
            )
        else:
            ax.axhline(1.0, color="k", linewidth=0.8)
            ax.set(ylabel="× segmenter (p50)", title=f"Speed-up over the segmenter — {title}")
        ax.set_xticks(range(len(cells)), [f"{h}×{w}\nbatch {b}" for h, w, b in cells], fontsize=8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        paths.append(prefix.with_name(f"{prefix.name}-{kind}.png"))
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write(result: dict[str, Any], prefix: Path, plots: bool = True) -> list[Path]:
    """Write <prefix>.json, <prefix>.md and (unless `plots` is False) the PNGs; their paths."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_name(prefix.name + ".json")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path = prefix.with_name(prefix.name + ".md")
    md_path.write_text(markdown(result))
    return [json_path, md_path, *(plot(result, prefix) if plots else [])]


def main(argv: list[str] | None = None) -> int:
    """Regenerate the markdown and plots of a result JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", type=Path, help="a JSON written by scripts/bench/run.py")
    p.add_argument("--out", type=Path, help="output prefix (default: the JSON path, no .json)")
    args = p.parse_args(argv)
    result = json.loads(args.result.read_text())
    prefix = args.out or args.result.with_suffix("")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_name(prefix.name + ".md").write_text(markdown(result))
    for path in plot(result, prefix):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
