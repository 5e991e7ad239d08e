"""The GPU check's record: one JSON line per step in OUT/gpu_check.jsonl, appended as each step
ends (a run killed later keeps every number measured so far), and OUT/gpu_check.md rendered
from those lines; a global deadline after which steps are recorded as skipped.

    python scripts/gpu_check_report.py OUT STEP passed|failed|skipped SECONDS NOTE

appends one step's line from the shell (preflight, build, ctest) and re-renders the markdown.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

JSONL = "gpu_check.jsonl"
MARKDOWN = "gpu_check.md"
OUTCOMES = {"passed": True, "failed": False, "skipped": None}


class StepFailed(AssertionError):
    """A step's goal was missed; `details` (e.g. its table) still go into the record."""

    def __init__(self, message: str, **details) -> None:
        super().__init__(message)
        self.details = details


class StepSkipped(Exception):
    """A step that cannot run here (the dry run has no CUDA): recorded as skipped, never as
    passed, with the reason."""


class FakeClock:
    """A clock for the dry run's deadline test: each read is `step_s` seconds after the last."""

    def __init__(self, step_s: float) -> None:
        self.step_s, self.now = float(step_s), 0.0

    def __call__(self) -> float:
        """The current fake time, then advance by one step."""
        now, self.now = self.now, self.now + self.step_s
        return now


def append(out: Path, entry: dict) -> None:
    """Append one line to OUT/gpu_check.jsonl (flushed at once) and re-render the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / JSONL, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, default=str) + "\n")
        f.flush()
    (out / MARKDOWN).write_text(markdown(read(out)))


def read(out: Path) -> list[dict]:
    """Every line of OUT/gpu_check.jsonl, in order."""
    path = out / JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Report:
    """Runs named steps against one deadline; each step's outcome, seconds and numbers are
    appended to the record as it ends."""

    def __init__(
        self,
        out: Path,
        deadline_s: float,
        clock: Callable[[], float] = time.monotonic,
        only: set[str] | None = None,
    ) -> None:
        self.out, self.deadline_s, self.clock, self.only = out, float(deadline_s), clock, only
        self.t0 = clock()
        self.steps: list[dict] = []

    def facts(self, facts: dict) -> None:
        """Record what the run ran on (GPU, torch, CUDA, the deadline)."""
        append(self.out, {"record": "facts", **facts})

    def step(
        self, key: str, name: str, fn: Callable[[], dict], needs_s: float = 0.0
    ) -> dict | None:
        """Run one step unless the deadline has passed, fewer than `needs_s` seconds are left,
        or `only` leaves it out; a failure is recorded with its error and the run goes on.
        Returns the entry when the step passed, else None."""
        elapsed = self.clock() - self.t0
        left = self.deadline_s - elapsed
        entry: dict = {"record": "step", "key": key, "step": name}
        t0 = time.perf_counter()
        if self.only is not None and key not in self.only:
            entry.update(
                ok=None, skipped=f"not selected (GPU_CHECK_ONLY={','.join(sorted(self.only))})"
            )
        elif left <= 0:
            entry.update(ok=None, skipped=f"deadline: {elapsed:.0f} s of {self.deadline_s:.0f}")
        elif left < needs_s:
            entry.update(
                ok=None,
                skipped=f"deadline: needs ~{needs_s:.0f} s, {left:.0f} s left of "
                f"{self.deadline_s:.0f}",
            )
        else:
            print(f"[gpu_check] {name} ...", flush=True)
            try:
                entry.update(ok=True, **(fn() or {}))
            except StepSkipped as exc:
                entry.update(ok=None, skipped=str(exc))
            except Exception as exc:  # noqa: BLE001 - every failure is data for the record
                entry.update(
                    ok=False,
                    error=f"{type(exc).__name__}: {exc}",
                    trace=traceback.format_exc(limit=6)[-3000:],
                    **getattr(exc, "details", {}),
                )
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        word = {True: "passed", False: "FAILED", None: "skipped"}[entry["ok"]]
        reason = entry.get("error") or entry.get("skipped") or ""
        print(f"[gpu_check] {name}: {word} ({entry['seconds']} s) {reason}".rstrip(), flush=True)
        self.steps.append(entry)
        append(self.out, entry)
        return entry if entry["ok"] else None


def markdown(lines: list[dict]) -> str:
    """The record as markdown: facts, a line per step, then each step's goals and rows."""
    facts = next((x for x in lines if x.get("record") == "facts"), {})
    steps = [x for x in lines if x.get("record") == "step"]
    where = "DRY RUN on CPU" if facts.get("dry_run") else facts.get("gpu", "GPU")
    out = [
        f"# GPU check ({where})",
        "",
        f"torch {facts.get('torch')}, CUDA {facts.get('cuda')}, cuDNN {facts.get('cudnn')}, "
        f"Python {facts.get('python')}, deadline {facts.get('deadline_s')} s",
        "",
        "| step | outcome | s | note |",
        "|---|---|---|---|",
    ]
    outcomes = {True: "passed", False: "**FAILED**", None: "skipped"}
    for s in steps:
        note = str(s.get("error") or s.get("skipped") or s.get("note") or "")
        note = note.replace("|", "/").replace("\n", " ")[:200]
        out.append(f"| {s['step']} | {outcomes[s['ok']]} | {s.get('seconds', '')} | {note} |")
    for s in steps:
        for key in ("goals", "rows"):
            table = s.get(key)
            if not table:
                continue
            keys = list(dict.fromkeys(k for r in table for k in r))
            out += ["", f"## {s['step']}{': goals' if key == 'goals' else ''}", ""]
            out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            out += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in table]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    """Append one step's line from the shell: OUT STEP passed|failed|skipped SECONDS NOTE."""
    if len(argv) != 5 or argv[2] not in OUTCOMES:
        print(
            "usage: gpu_check_report.py OUT STEP passed|failed|skipped SECONDS NOTE",
            file=sys.stderr,
        )
        return 2
    out, name, outcome, seconds, note = argv
    ok = OUTCOMES[outcome]
    entry: dict = {"record": "step", "key": name, "step": name, "ok": ok}
    entry[{True: "note", False: "error", None: "skipped"}[ok]] = note
    entry["seconds"] = float(seconds)
    append(Path(out), entry)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
