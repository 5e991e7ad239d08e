"""`ifa-rt info`: what is installed: bundled models (files, classes, accuracy gates), the data
folder, and the compiled-package cache; `--plan HxW` adds a model's memory plan.

    ifa-rt info                      # readable text
    ifa-rt info camvid --plan 360x480
    ifa-rt info --json               # the same facts for programs

Reads files only (metadata from the archives, gates from their records), except `--plan`,
which builds a TorchScript fp32 engine for that size to read its plan (a few seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

from ..side_files import SIDE_FILES

__all__ = ["collect_info", "configure_parser", "format_info", "run_cli"]

_GATE_PRECISIONS = ("int8", "bf16", "fp16")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt info`."""
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="bundled model names or .ifa.pt paths (default: every bundled model)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--plan",
        metavar="HxW",
        help="also build a TorchScript fp32 engine for this input size and report its plan "
        "(preallocated bytes; a few seconds per model)",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Print the facts as text or JSON; returns 0."""
    from ..shapes import parse_shape

    plan = parse_shape(args.plan) if args.plan else None
    info = collect_info(args.models or None, plan_shape=plan)
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    return 0


def collect_info(
    models: list[str] | None = None, plan_shape: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The facts `ifa-rt info` prints, as a JSON-ready dict (see the module doc)."""
    import torch

    from .. import __version__
    from ..bundled import bundled_models, resolve
    from ..side_files import file_sha256

    names = models if models is not None else bundled_models()
    entries = [_model_info(name, resolve(name, where="info"), plan_shape) for name in names]
    digests = {file_sha256(resolve(n, where="info"))[:16]: n for n in names}
    return {
        "ifa_rt_version": __version__,
        "torch_version": torch.__version__,
        "models": entries,
        "data": _data_info(),
        "cache": _cache_info(digests),
    }


def _model_info(name: str, artifact: Path, plan_shape: tuple[int, int] | None) -> dict[str, Any]:
    """One model: its metadata, the files that go with it, its gates, and optionally its plan."""
    from ..side_files import file_sha256

    meta = _artifact_metadata(artifact)
    stem = artifact.name.removesuffix(".pt").removesuffix(".ifa")
    files = []
    for path in sorted(artifact.parent.glob(f"{stem}.*")):
        role = next((r for suffix, r in SIDE_FILES if path.name == stem + suffix), None)
        if role is not None:
            files.append({"file": str(path), "role": role, "bytes": path.stat().st_size})
    entry: dict[str, Any] = {
        "name": name,
        "artifact": str(artifact),
        "sha256": file_sha256(artifact),
        "preset": meta.get("preset"),
        "form": meta.get("form"),
        "num_classes": meta["num_classes"],
        "classes": list(meta["classes"]),
        "min_size": meta["input"].get("min_size"),
        "files": files,
        "gates": {p: _gate(artifact, p) for p in _GATE_PRECISIONS},
    }
    if plan_shape is not None:
        entry["plan"] = _plan(artifact, plan_shape)
    return entry


def _artifact_metadata(artifact: Path) -> dict[str, Any]:
    """The artifact's `ifa_rt.json`, read from the archive without loading the graph."""
    from ..deploy.metadata import EXTRA_FILE, parse_metadata

    try:
        with zipfile.ZipFile(artifact) as archive:
            names = [n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")]
            raw = archive.read(names[0]).decode() if names else ""
    except zipfile.BadZipFile as exc:
        raise ValueError(f"info: '{artifact}': expected a TorchScript archive, got {exc}") from None
    return parse_metadata(raw, source=str(artifact))


def _gate(artifact: Path, precision: str) -> dict[str, Any] | None:
    """A precision's gate record (None when there is none): agreement, limits, passed, and
    whether it was measured on exactly this artifact (`usable`: both)."""
    from ..side_files import file_sha256

    if precision == "int8":
        from ..side_files import calibration_for, load_calibration

        calibration = calibration_for(artifact)
        if calibration is None:
            return None
        try:
            record = load_calibration(calibration, artifact)
            gate = dict(record["quantization"].get("gate") or {})
            matches, why = True, None
        except ValueError as exc:  # a calibration of another artifact (or version)
            gate, matches, why = {}, False, str(exc)
        record_file = calibration
    else:
        from ..runtime.precision import GATE_VERSION, gate_file

        record_file = gate_file(artifact, precision)
        if not record_file.is_file():
            return None
        record = json.loads(record_file.read_text())
        gate = dict(record.get("gate") or {})
        matches = record.get("format_version") == GATE_VERSION and record.get(
            "artifact_sha256"
        ) == file_sha256(artifact)
        why = None if matches else "measured on another artifact (or gate format)"
    passed = bool(gate.get("passed"))
    out = {
        "file": str(record_file),
        "label_agreement": gate.get("label_agreement"),
        "min_label_agreement": gate.get("min_label_agreement"),
        "miou_drop": gate.get("miou_drop"),
        "max_miou_drop": gate.get("max_miou_drop"),
        "images": gate.get("images"),
        "passed": passed,
        "matches_artifact": matches,
        "usable": passed and matches,
    }
    if why:
        out["why_not"] = why
    return out


def _plan(artifact: Path, shape: tuple[int, int]) -> dict[str, Any]:
    """The memory plan of a TorchScript fp32 engine at batch 1 for one input size."""
    from ..runtime.segmenter import Segmenter

    t0 = time.perf_counter()
    seg = Segmenter(artifact, precision="fp32", runtime="jit", shapes=[shape], threads=1)
    plan = seg.plan
    return {
        "engine": "TorchScript fp32",
        "shape": list(shape),
        "max_batch": 1,
        "buckets": [list(b) for b in plan["buckets"]],
        "total_bytes": int(plan["total_bytes"]),
        "build_s": round(time.perf_counter() - t0, 2),
    }


def _data_info() -> dict[str, Any]:
    """The real-data folder and where its name came from."""
    from ..data.folders import DATA_ENV, default_data_root

    folder = default_data_root()
    return {
        "folder": str(folder),
        "from": f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "default",
        "exists": folder.is_dir(),
        "datasets": sorted(p.name for p in folder.iterdir() if p.is_dir())
        if folder.is_dir()
        else [],
    }


def _cache_info(digests: dict[str, str]) -> dict[str, Any]:
    """The compiled-package cache: each package, which model it belongs to, what it holds."""
    from ..deploy.aoti import read_package_metadata
    from ..side_files import PACKAGE_SUFFIX, cache_dir

    folder = cache_dir()
    packages = []
    for path in sorted(folder.glob(f"*{PACKAGE_SUFFIX}")) if folder.is_dir() else []:
        entry: dict[str, Any] = {
            "file": str(path),
            "bytes": path.stat().st_size,
            "model": digests.get(path.name.split("-", 1)[0]),  # named by the artifact's hash
        }
        try:
            meta = read_package_metadata(path)
            aoti = meta.get("aoti") or {}
            entry.update(
                preset=meta.get("preset"),
                precision=aoti.get("precision"),
                # Older packages returned labels; today's return coarse logits (both load).
                output=aoti.get("output", "labels"),
                buckets=aoti.get("buckets"),
                threads=aoti.get("threads"),
                cpu_isa=aoti.get("cpu_isa"),
                torch_version=aoti.get("torch_version"),
            )
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            entry["error"] = f"unreadable package: {exc}"  # listed, so it can be cleared
        packages.append(entry)
    return {
        "folder": str(folder),
        "from": "$IFA_RT_CACHE" if os.environ.get("IFA_RT_CACHE") else "default",
        "exists": folder.is_dir(),
        "packages": packages,
        "total_bytes": sum(p["bytes"] for p in packages),
    }


def _size(n: int) -> str:
    """Bytes as KiB / MiB with one decimal."""
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _gate_line(precision: str, gate: dict[str, Any] | None) -> str:
    """One readable line per gate."""
    if gate is None:
        return f"    {precision}: no gate"
    if not gate["matches_artifact"]:
        return f"    {precision}: not usable: {gate.get('why_not')}"
    verdict = "passed" if gate["passed"] else "FAILED"
    parts = []
    if gate["label_agreement"] is not None:
        parts.append(
            f"label agreement {100 * gate['label_agreement']:.2f} % "
            f"(min {100 * (gate['min_label_agreement'] or 0):.2f} %)"
        )
    if gate["miou_drop"] is not None:
        parts.append(f"mIoU drop {gate['miou_drop']:.4f} (max {gate['max_miou_drop']:.4f})")
    if gate["images"]:
        parts.append(f"{gate['images']} images")
    return f"    {precision}: {verdict}: " + ", ".join(parts)


def format_info(info: dict[str, Any]) -> str:
    """The facts as readable text (sizes H×W, as the API takes them)."""
    lines = [f"ifa-rt {info['ifa_rt_version']} (torch {info['torch_version']})"]
    for m in info["models"]:
        lines += [
            "",
            f"model {m['name']}: preset {m['preset']}, {m['num_classes']} classes, "
            f"{m['form']} form, inputs at least {m['min_size']}x{m['min_size']} (HxW)",
            f"  classes: {', '.join(m['classes'])}",
            f"  files (in {Path(m['artifact']).parent}):",
        ]
        width = max((len(Path(f["file"]).name) for f in m["files"]), default=0)
        for f in m["files"]:
            name = Path(f["file"]).name
            lines.append(f"    {name:<{width}}  {_size(f['bytes']):>10}  {f['role']}")
        lines.append(f"  sha256 {m['sha256']}")
        lines.append("  gates:")
        lines += [_gate_line(p, m["gates"][p]) for p in _GATE_PRECISIONS]
        if "plan" in m:
            p = m["plan"]
            lines.append(
                f"  plan ({p['engine']}, batch 1, {p['shape'][0]}x{p['shape'][1]}): "
                f"{_size(p['total_bytes'])} preallocated (built in {p['build_s']:.1f} s)"
            )
        else:
            lines.append("  plan: not built (add --plan HxW, e.g. --plan 360x480)")
    data = info["data"]
    state = (", ".join(data["datasets"]) or "empty") if data["exists"] else "missing"
    lines += ["", f"data folder: {data['folder']} ({data['from']}; {state})"]
    if not data["exists"]:
        lines.append("  set IFA_RT_DATA=/path/to/data (the folder holding camvid/)")
    cache = info["cache"]
    lines.append(
        f"compiled-package cache: {cache['folder']} ({cache['from']}; "
        f"{len(cache['packages'])} packages, {_size(cache['total_bytes'])})"
    )
    for p in cache["packages"]:
        if "error" in p:
            lines.append(f"  {Path(p['file']).name}  {_size(p['bytes'])}  {p['error']}")
            continue
        buckets = ", ".join("x".join(map(str, b)) for b in p["buckets"] or [])
        lines.append(
            f"  {Path(p['file']).name}  {_size(p['bytes']):>10}  {p['model'] or p['preset']}  "
            f"{p['precision']}  buckets BxHxW {buckets}  {p['threads']} threads  "
            f"{p['output'].replace('_', ' ')} out"
        )
    if cache["packages"]:
        lines.append("  (ifa-rt prepare --clear empties it)")
    return "\n".join(lines)
