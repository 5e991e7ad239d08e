"""The GPU check's record: named steps with outcome, seconds and numbers, as JSON and markdown."""

from __future__ import annotations

import json
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch


class StepFailed(AssertionError):
    """A step's goal was missed; `details` (e.g. its table) still go into the report."""

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.details = details


class StepSkipped(Exception):
    """A step that cannot run here (the dry run has no CUDA): recorded as skipped, never as
    passed, with the reason."""


class Report:
    """Named steps with their outcome, seconds and numbers; written as JSON and markdown."""

    def __init__(self, out: Path, dry_run: bool) -> None:
        self.out, self.steps = out, []
        self.facts = {
            "dry_run": dry_run,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        }

    def step(self, name: str, fn: Callable[[], dict]) -> dict | None:
        """Run one step; a failure is recorded with its error and the run goes on."""
        print(f"[gpu_check] {name} ...", flush=True)
        t0 = time.perf_counter()
        entry = {"step": name}
        try:
            entry.update(ok=True, **(fn() or {}))
        except StepSkipped as exc:
            entry.update(ok=None, skipped=str(exc))
            print(f"[gpu_check] {name} SKIPPED: {exc}", flush=True)
        except Exception as exc:  # noqa: BLE001 - every failure is data for the report
            entry.update(
                ok=False,
                error=f"{type(exc).__name__}: {exc}",
                trace=traceback.format_exc(limit=6),
                **getattr(exc, "details", {}),
            )
            print(f"[gpu_check] {name} FAILED: {entry['error']}", flush=True)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        self.steps.append(entry)
        self.write()
        return entry if entry["ok"] else None

    def write(self) -> None:
        """Rewrite both files (after every step: a run cut short still reports)."""
        self.out.mkdir(parents=True, exist_ok=True)
        doc = {"facts": self.facts, "steps": self.steps}
        (self.out / "gpu_check.json").write_text(json.dumps(doc, indent=1, default=str))
        (self.out / "gpu_check.md").write_text(markdown(doc))


def markdown(doc: dict) -> str:
    """The report as markdown: facts, a line per step, the accuracy and latency tables."""
    f = doc["facts"]
    lines = [
        f"# GPU check ({'DRY RUN on CPU' if f['dry_run'] else f['gpu']})",
        "",
        f"torch {f['torch']}, CUDA {f['cuda']}, Python {f['python']}",
        "",
        "| step | outcome | s | note |",
        "|---|---|---|---|",
    ]
    outcomes = {True: "passed", False: "**FAILED**", None: "skipped"}
    for s in doc["steps"]:
        note = s.get("error") or s.get("skipped") or s.get("note") or ""
        lines.append(f"| {s['step']} | {outcomes[s['ok']]} | {s['seconds']} | {str(note)[:160]} |")
    for s in doc["steps"]:
        for key in ("goals", "rows"):
            if not s.get(key):
                continue
            keys = list(s[key][0])
            title = f"{s['step']}: goals" if key == "goals" else s["step"]
            lines += [
                "",
                f"## {title}",
                "",
                "| " + " | ".join(keys) + " |",
                "|" + "---|" * len(keys),
            ]
            lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in s[key]]
    return "\n".join(lines) + "\n"
