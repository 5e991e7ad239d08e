"""Print the model card's tables from a training run and its evaluation (markdown).

    python scripts/card_tables.py runs/camvid runs/camvid/eval_holdout

Reads RUN/history.json (validation during training), RUN/summary.json and EVAL/metrics.json
(`ifa-rt eval --out EVAL`), so the numbers in docs/model-card.md are pasted, never retyped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def per_class_table(metrics: dict) -> str:
    """Two-column-pair table of per-class IoU, then mIoU and pixel accuracy."""
    items = list(metrics["per_class_iou"].items())
    half = (len(items) + 1) // 2
    rows = ["| class | IoU | class | IoU |", "|---|---|---|---|"]
    for left, right in zip(items[:half], items[half:] + [("", None)], strict=False):
        cells = [
            f"{name} | {'-' if v is None else f'{v:.3f}'}" if name else " | "
            for name, v in (left, right)
        ]
        rows.append(f"| {cells[0]} | {cells[1]} |")
    rows += [
        "",
        f"mIoU **{metrics['miou']:.3f}**, pixel accuracy {metrics['pixel_accuracy']:.3f} "
        f"({metrics['images']} images, {metrics['split']} {metrics.get('sequences')}, "
        f"{metrics['mode']})",
    ]
    return "\n".join(rows)


def history_line(history: list[dict]) -> str:
    """Validation mIoU at each validation step."""
    return ", ".join(f"step {h['step']}: {h['miou']:.3f}" for h in history)


def main(argv: list[str] | None = None) -> int:
    """Print both tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="training output folder (history.json)")
    p.add_argument("eval", type=Path, help="ifa-rt eval --out folder (metrics.json)")
    args = p.parse_args(argv)
    history = json.loads((args.run / "history.json").read_text())
    metrics = json.loads((args.eval / "metrics.json").read_text())
    print(per_class_table(metrics))
    print()
    print("Validation during training (mIoU): " + history_line(history))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
