"""The engine arguments every serving command shares: --precision and --runtime."""

from __future__ import annotations

import argparse

PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")
RUNTIMES = ("auto", "jit", "static", "aoti")


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--precision and --runtime, with the defaults Segmenter has (auto, auto)."""
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (default): the fastest precision whose accuracy gate passed and that this "
        "hardware runs natively (int8 on VNNI CPUs, bf16 on AVX512_BF16/AMX CPUs, fp16/bf16 on "
        "CUDA); fp32: exact",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=RUNTIMES,
        help="auto (default): a compiled AOTInductor package when cached, else TorchScript at "
        "once and the package compiled in the background (tier-up); aoti: compile first; "
        "jit/static: TorchScript only",
    )


def describe_engine(seg) -> str:
    """One line: the engine serving, what was chosen and why others were skipped."""
    choice = seg.plan["choice"]
    line = f"engine: {seg.stats()['engine']}"
    if not choice.get("asked"):
        line += f" (chose {choice['runtime']} {choice['precision']}"
        skipped = "; ".join(f"{k}: {v}" for k, v in choice["skipped"].items())
        line += f"; skipped {skipped})" if skipped else ")"
        tier = choice.get("tier_up")
        if tier and tier["state"] not in ("serving",):
            line += f"; tier-up {tier['state']}" + (f": {tier['reason']}" if tier["reason"] else "")
    return line
