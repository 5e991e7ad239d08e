"""Measure the accuracy gate of bf16 or fp16 for an artifact through the C++ runtime.

The record it writes beside the artifact (for a bundled model: in the user cache, never into
the installed package; `ifa_rt.runtime.precision.gate_output`) is what `precision="auto"`
requires before it considers that precision (`ifa_rt.runtime.prepare`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..runtime.precision import GATE_VERSION, gate_output
from ..side_files import file_sha256
from .aoti import machine_facts
from .gate import Gate, compare

__all__ = ["gate_precision"]


def gate_precision(
    artifact: str | Path,
    precision: str,
    images: list[np.ndarray],
    labels: list[np.ndarray] | None,
    *,
    gate: Any = None,
    device: str = "cpu",
    threads: int | None = None,
    output: str | Path | None = None,
) -> dict[str, Any]:
    """Measure the gate of bf16 or fp16 against fp32 through the C++ runtime; write it to
    `output` (default: `gate_output(artifact, precision)`) and return the written record."""
    from ..runtime.segmenter import Segmenter  # loads the extension: only when measuring

    if precision not in ("bf16", "fp16"):
        raise ValueError(f"gate: 'precision': expected 'bf16' or 'fp16', got '{precision}'")
    artifact = Path(artifact)
    fp32 = Segmenter(artifact, device=device, threads=threads, precision="fp32")
    reduced = Segmenter(artifact, device=device, threads=threads, precision=precision)
    report = compare(
        precision,
        fp32,
        reduced,
        images,
        labels,
        fp32.classes,
        gate or Gate(),
        fp32.metadata.get("ignore_index", 255),
    )
    record = {
        "format_version": GATE_VERSION,
        "precision": precision,
        "device": device,
        "artifact_sha256": file_sha256(artifact),
        "machine": machine_facts(),
        "gate": report,
    }
    out = Path(output) if output else gate_output(artifact, precision)
    out.parent.mkdir(parents=True, exist_ok=True)  # the cache folder may not exist yet
    out.write_text(json.dumps(record, indent=1) + "\n")
    return record
