"""The `ifa-rt` command line: one subcommand per job, each implemented in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module that implements it, one-line help). Each module provides
# `configure_parser(parser)` and `run_cli(args) -> int`; modules load only when used.
COMMANDS = {
    "export": (
        "ifa_rt.cli.export",
        "export a model: TorchScript (.ifa.pt), AOTInductor package (.pt2) or ONNX",
    ),
    "convert": ("ifa_rt.cli.convert", "convert a reference IFA checkpoint to ours"),
    "segment": ("ifa_rt.cli.segment", "segment images, videos, streams and webcams"),
    "quantize": ("ifa_rt.cli.quantize", "int8 package of an artifact, behind an accuracy gate"),
    "eval": ("ifa_rt.cli.eval", "evaluate mIoU on a labelled dataset"),
    "train": ("ifa_rt.cli.train", "train an IFA model"),
    "bench": ("ifa_rt.cli.bench", "measure latency of the runtime"),
    "prepare": ("ifa_rt.cli.prepare", "compile a model's fastest engine into the cache"),
    "serve": ("ifa_rt.cli.serve", "serve a model over HTTP with Ray Serve"),
    "info": ("ifa_rt.cli.info", "bundled models, their files, classes and gates; data; cache"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """Build the parser; only the chosen subcommand's module is imported."""
    parser = argparse.ArgumentParser(prog="ifa-rt", description=__doc__)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"ifa-rt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.configure_parser(p)
            p.set_defaults(_run=module.run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `ifa-rt` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ValueError, RuntimeError, OSError, ImportError) as exc:
        # 1 for a failed run; argparse keeps 2 for usage errors.
        print(f"ifa-rt {args.command}: error: {exc}", file=sys.stderr)
        return 1
