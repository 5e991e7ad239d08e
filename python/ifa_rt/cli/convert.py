"""`ifa-rt convert`: a reference IFA checkpoint to this project's checkpoint format."""

from __future__ import annotations

import argparse
import os

from ..deploy.checkpoint import DEFAULT_REFERENCE_PRESET, load_checkpoint, save_checkpoint


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``ifa-rt convert REF_CKPT -o OURS [--preset P]``."""
    parser.add_argument(
        "reference", metavar="REF_CKPT", help="reference IFA checkpoint ({'model_state', ...})"
    )
    parser.add_argument("-o", "--output", required=True, help="our checkpoint to write")
    parser.add_argument(
        "--preset",
        default=None,
        help=f"preset the reference was trained as (default: {DEFAULT_REFERENCE_PRESET})",
    )


def run_cli(args: argparse.Namespace) -> int:
    """Run ``ifa-rt convert``: load the reference checkpoint, validate it, save ours."""
    model = load_checkpoint(args.reference, preset=args.preset)
    preset = model.preset or DEFAULT_REFERENCE_PRESET
    save_checkpoint(
        model,
        args.output,
        preset=preset,
        meta={"converted_from": os.path.abspath(args.reference), **model.checkpoint_meta},
    )
    n = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.output}: preset {preset!r}, {model.cfg.num_classes} classes, {n:,} parameters"
    )
    return 0
