#!/usr/bin/env python
"""Markdown table and PNG plots of a `bench_latency.py` result.

    .venv/bin/python scripts/plot_bench.py docs/bench/cityscapes-r50-cpu.json
writes <prefix>.md, <prefix>-latency.png (p50 vs batch, p90 as error bar, per variant) and
<prefix>-speedup.png (speed-up over the reference eager model, per cell).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

ORDER = ("reference", "fused", "fused_cl", "torchscript", "torchscript_ofi",
         "torchscript_proposed", "segmenter", "segmenter_proc", "segmenter_ofi", "segmenter_jit",
         "segmenter_static", "segmenter_proposed", "segmenter_proposed_jit",
         "segmenter_proposed_static", "cpp_bench", "onnxruntime", "onnxruntime_ref")


def _key(r: dict[str, Any]) -> tuple:
    rank = ORDER.index(r["variant"]) if r["variant"] in ORDER else len(ORDER)
    return r["precision"] != "fp32", r["precision"], r["height"] * r["width"], r["batch"], rank


def _f(value: Any, fmt: str, empty: str = "–") -> str:
    return empty if value is None else format(value, fmt)


def markdown(result: dict[str, Any]) -> str:
    """The result as a markdown section: context lines, then one table row per record."""
    host, cfg = result["host"], result["config"]
    peaks = ", ".join(f"{p} {v:.0f} GFLOP/s" for p, v in result["matmul_peak_gflops"].items())
    work = ", ".join(f"{s}: {m['reference']:.1f} → {m['fused']:.1f}"
                     for s, m in result["gmacs_per_image"].items())
    lines = [
        f"`{result['command']}` — {result['created_utc']}",
        "",
        f"- host: {host['cpu']}, {host['cores']} cores ({', '.join(host['isa'])}); "
        f"torch {host['torch']}, onnxruntime {host.get('onnxruntime', '–')}, "
        f"ifa_rt {host['ifa_rt']}{', GPU ' + host['gpu'] if host.get('gpu') else ''}",
        f"- preset {cfg['preset']} ({'checkpoint' if cfg['checkpoint'] else 'random weights'}), "
        f"device {cfg['device']}, {cfg['threads']} threads, rounds {cfg['reps']}, "
        f"warm-up {cfg['warmup']}, ifa-rt-bench bursts of {cfg['burst']}",
        f"- load average {result['loadavg_start']} → {result['loadavg_end']}; training job "
        f"running: {result['training_running']} → {result['training_running_end']}",
        f"- matmul peak (2048³ torch.mm): {peaks}",
        f"- G MACs per image, reference → fused: {work}",
        "",
        "| variant | prec | batch | shape | p50 ms | p90 ms | p99 ms | img/s | × fp32 ref "
        "| GFLOP/s | % peak | first call ms (× p50) | peak RSS MiB | labels = fp32 ref |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for r in sorted(result["results"], key=_key):
        shape = f"{r['height']}×{r['width']}"
        if r["status"] != "ok":
            notes.append(f"- {r['variant']} ({r['precision']}, {shape}): {r['status']}: "
                         f"{r['reason']}")
            continue
        first = r.get("first_call_ms")
        first_s = f"{first:.0f} ({r['first_over_p50']:.2f}×)" if first is not None else "–"
        agree = r.get("label_agreement_vs_fp32_reference")
        lines.append(
            f"| {r['variant']} | {r['precision']} | {r['batch']} | {shape} | {r['p50_ms']:.1f} "
            f"| {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['images_per_s']:.2f} "
            f"| {_f(r['speedup_vs_reference'], '.2f')} | {r['gflops_per_s']:.0f} "
            f"| {_f(r['peak_fraction'] and 100 * r['peak_fraction'], '.0f')} | {first_s} "
            f"| {_f(r.get('peak_rss_mib'), '.0f')} | {_f(agree and 100 * agree, '.2f')}"
            f"{'' if agree is None else ' %'} |"
        )
    if notes:
        lines += ["", *sorted(set(notes))]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], prefix: Path) -> list[Path]:
    """Write the two PNG plots next to `prefix`; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in result["results"] if r["status"] == "ok"]
    shapes = sorted({(r["height"], r["width"]) for r in ok}, key=lambda s: s[0] * s[1])
    variants = [v for v in ORDER if any(r["variant"] == v for r in ok)]
    precisions = sorted({r["precision"] for r in ok}, key=lambda p: p != "fp32")
    styles = {"fp32": "-", "bf16": "--", "fp16": ":"}
    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    title = f"{result['config']['preset']} on {result['config']['device']}, " \
            f"{result['config']['threads']} threads"
    paths = []

    fig, axes = plt.subplots(1, len(shapes), figsize=(5 * len(shapes), 4), squeeze=False)
    for ax, (h, w) in zip(axes[0], shapes, strict=True):
        for v in variants:
            for p in precisions:
                rows = sorted((r for r in ok if r["variant"] == v and r["precision"] == p
                               and (r["height"], r["width"]) == (h, w)), key=lambda r: r["batch"])
                if not rows:
                    continue
                xs = [r["batch"] for r in rows]
                ys = [r["p50_ms"] for r in rows]
                err = [[0] * len(rows), [r["p90_ms"] - r["p50_ms"] for r in rows]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colors[v],
                            linestyle=styles.get(p, "-"), label=f"{v} {p}")
        ax.set(title=f"{h}×{w}", xlabel="batch", ylabel="p50 latency per call (ms)",
               xscale="log", yscale="log")
        ax.set_xticks(sorted({r["batch"] for r in ok}), labels=None)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle(f"Latency vs batch (bar: p90) — {title}")
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "-latency.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    cells = sorted({(r["precision"], r["height"], r["width"], r["batch"]) for r in ok},
                   key=lambda c: (c[0] != "fp32", c[0], c[1] * c[2], c[3]))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(cells) + 2), 4))
    width = 0.8 / max(len(variants), 1)
    for i, v in enumerate(variants):
        xs, ys = [], []
        for j, (p, h, w, b) in enumerate(cells):
            row = next((r for r in ok if (r["variant"], r["precision"], r["height"], r["width"],
                                          r["batch"]) == (v, p, h, w, b)), None)
            if row and row["speedup_vs_reference"]:
                xs.append(j + (i - (len(variants) - 1) / 2) * width)
                ys.append(row["speedup_vs_reference"])
        bars = ax.bar(xs, ys, width, color=colors[v], label=v)
        ax.bar_label(bars, fmt="%.2f", fontsize=6, rotation=90, padding=2)
    ax.axhline(1.0, color="k", linewidth=0.8)
    ax.axhline(2.0, color="r", linewidth=0.8, linestyle="--", label="goal 2×")
    ax.set_xticks(range(len(cells)), [f"{p} b{b}\n{h}×{w}" for p, h, w, b in cells], fontsize=8)
    ax.set(ylabel="speed-up over fp32 reference eager (p50)", title=f"Speed-up — {title}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(prefix.with_name(prefix.name + "-speedup.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    """Regenerate the markdown and plots of a result JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("result", type=Path, help="bench_latency.py JSON")
    p.add_argument("--out", type=Path, help="output prefix (default: the JSON path without .json)")
    args = p.parse_args(argv)
    result = json.loads(args.result.read_text())
    prefix = args.out or args.result.with_suffix("")
    prefix.with_name(prefix.name + ".md").write_text(markdown(result))
    for path in plot(result, prefix):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
