"""`ifa-rt quantize`: an int8 AOTInductor package of an artifact, behind an accuracy gate.

ifa-rt quantize --model camvid --shapes 360x480 -o camvid-int8.pt2 \
    --save-calibration camvid.int8.pt
    (calibrates on CamVid train frames, gates on the val frames with their labels; the saved
    calibration lets `Segmenter(artifact, precision="int8")` compile the same int8 model on any
    VNNI CPU)
ifa-rt quantize --precision bf16 --model m.ifa.pt
    (measures bf16 against fp32 through the C++ runtime on the gate split; writes m.bf16.json
    beside the artifact, which precision="auto" requires before it considers bf16; for a
    bundled model the record goes to the user cache, never into the installed package, unless
    -o names the file)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt quantize`."""
    parser.add_argument("--model", required=True, help="bundled model name or .ifa.pt artifact")
    parser.add_argument(
        "--precision",
        default="int8",
        choices=["int8", "bf16", "fp16"],
        help="int8: calibrate, compile and gate a package; bf16/fp16: measure the gate only",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="int8: package path (.pt2); bf16/fp16: gate record path (default: NAME.bf16.json "
        "beside the artifact; for a bundled model, the user cache)",
    )
    parser.add_argument("--shapes", help="int8: input sizes to compile, e.g. 360x480")
    parser.add_argument("--device", default="cpu", help="bf16/fp16: where to measure the gate")
    parser.add_argument("--max-batch", type=int, default=1, help="largest compiled batch")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    parser.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes"])
    parser.add_argument("--data", help="dataset root (default: the project's data folder)")
    parser.add_argument("--calibration-split", default="train")
    parser.add_argument("--calibration-count", type=int, default=200, help="images (random)")
    parser.add_argument(
        "--allow-overlap",
        action="store_true",
        help="also calibrate on the recordings the gate is measured on (by default they are "
        "dropped from calibration, so the gate stays held out; the record lists the overlap)",
    )
    parser.add_argument("--gate-split", default="val", help="held-out labelled split")
    parser.add_argument(
        "--gate-sequences",
        nargs="+",
        metavar="SEQ",
        help="gate on these recordings of --gate-split only (e.g. 0006R0)",
    )
    parser.add_argument("--gate-count", type=int, default=0, help="gate images (0: all)")
    parser.add_argument("--min-agreement", type=float, default=0.99, help="int8 = fp32 labels")
    parser.add_argument("--max-miou-drop", type=float, default=0.01, help="mIoU points / 100")
    parser.add_argument(
        "--keep-fp32", default="auto", help="'auto' or comma-separated module names kept fp32"
    )
    parser.add_argument("--force", action="store_true", help="write even if the gate fails")
    parser.add_argument(
        "--save-calibration",
        type=Path,
        metavar="PATH",
        help="also write the int8 calibration (observers + gate) here, e.g. NAME.int8.pt beside "
        "NAME.ifa.pt, where Segmenter(precision='int8' or 'auto') finds it",
    )
    # The flag's former name, kept for scripts that use it.
    parser.add_argument("--recipe", type=Path, dest="save_calibration", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt quantize`."""
    from tqdm.auto import tqdm

    from ..bundled import resolve
    from ..data import camvid, cityscapes
    from ..deploy.quantize import QuantizationGate, quantize_artifact
    from ..shapes import parse_shapes

    if args.precision == "int8" and (args.output is None or args.shapes is None):
        raise ValueError("quantize: '--output' and '--shapes': expected both for int8, got none")
    reader = {"camvid": camvid, "cityscapes": cityscapes}[args.dataset]
    artifact = resolve(args.model, where="quantize")
    gate_set = reader(args.gate_split, args.data)
    if args.gate_sequences:
        gate_set.keep_sequences(args.gate_sequences)
    n_gate = len(gate_set) if args.gate_count <= 0 else min(args.gate_count, len(gate_set))
    pairs = [gate_set.read(i) for i in tqdm(range(n_gate), desc="gate images")]
    images, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    gate = QuantizationGate(args.min_agreement, args.max_miou_drop)
    if args.precision != "int8":
        return _gate_only(args, artifact, images, labels, gate)
    calibration_set = reader(args.calibration_split, args.data)
    calibration_set, overlap = _held_out(calibration_set, gate_set, args.allow_overlap)
    rng = np.random.default_rng(args.seed)
    count = min(args.calibration_count, len(calibration_set))
    picks = rng.choice(len(calibration_set), count, replace=False)
    calibration = [calibration_set.read(int(i))[0] for i in tqdm(picks, desc="calibration")]
    keep = "auto" if args.keep_fp32 == "auto" else [s for s in args.keep_fp32.split(",") if s]
    meta = quantize_artifact(
        artifact,
        args.output,
        calibration=calibration,
        gate_images=images,
        gate_labels=labels,
        shapes=parse_shapes(args.shapes),
        max_batch=args.max_batch,
        threads=args.threads,
        gate=gate,
        keep_fp32=keep,
        force=args.force,
        progress=lambda message: tqdm.write(f"quantize: {message}"),
        save_calibration_to=args.save_calibration,
        provenance={
            "calibration_sequences": calibration_set.sequences(),
            "gate_sequences": gate_set.sequences(),
            "overlapping_sequences": overlap,
            "gate_sequences_in_training": _trained_on(artifact, gate_set.sequences()),
        },
    )
    passed = _print_gate(meta["quantization"]["gate"])
    print(f"wrote {args.output}: int8, {'passed' if passed else 'FAILED (forced)'} gate")
    if args.save_calibration:
        print(f"wrote {args.save_calibration}: the int8 calibration")
    return 0


def _trained_on(artifact, gate_sequences: list[str]) -> list[str] | None:
    """The gate's recordings the model itself was trained on (None: its metadata does not say),
    so a record shows when the gate measures agreement on frames the weights have seen."""
    from ..deploy.artifact import load_artifact

    _, meta = load_artifact(artifact)
    trained = ((meta.get("training") or {}).get("data") or {}).get("train_sequences")
    return None if trained is None else sorted(set(trained) & set(gate_sequences))


def _held_out(calibration_set, gate_set, allow_overlap: bool):
    """The calibration set without the gate's recordings, and the recordings both share
    (kept only with --allow-overlap): frames of one recording are near-duplicates, so a gate
    measured on a recording calibration saw is not held out."""
    overlap = sorted(set(calibration_set.sequences()) & set(gate_set.sequences()))
    if not overlap or allow_overlap:
        return calibration_set, overlap
    rest = [s for s in calibration_set.sequences() if s not in overlap]
    if not rest:
        raise ValueError(
            f"quantize: calibration split {calibration_set.split!r} has only the gate's "
            f"recordings {overlap}: expected others to calibrate on (or --allow-overlap)"
        )
    return calibration_set.keep_sequences(overlap, keep=False), []


def _gate_only(args: argparse.Namespace, artifact, images, labels, gate) -> int:
    """`--precision bf16|fp16`: measure the gate through the runtime and write it."""
    from ..deploy.precision_gate import gate_precision
    from ..runtime.precision import gate_output

    # -o is an explicit path (`make model` writes the shipped record into the bundle that
    # way), else nothing goes into the package.
    out = args.output or gate_output(artifact, args.precision)
    record = gate_precision(
        artifact,
        args.precision,
        images,
        labels,
        gate=gate,
        device=args.device,
        threads=args.threads,
        output=out,
    )
    passed = _print_gate(record["gate"])
    print(f"wrote {out}: {args.precision} gate {'passed' if passed else 'FAILED'}")
    # The record is written either way (precision="auto" reads a failed gate as "skip"), but
    # a failed gate is a failure to whoever scripts this command.
    return 0 if passed else 1


def _print_gate(report: dict) -> bool:
    """Print a gate report without its per-class table; whether it passed."""
    print(json.dumps({k: v for k, v in report.items() if k != "per_class_iou"}, indent=1))
    return bool(report["passed"])
