"""`ifa-rt prepare`: compile a model's fastest engine into the cache ahead of time.

    ifa-rt prepare camvid --shapes 360x480            # what Segmenter("camvid", shapes=...) uses
    ifa-rt prepare --list                              # the cache's packages
    ifa-rt prepare --clear                             # empty the cache

A Segmenter built later with the same shapes, threads and batching finds the package and
serves on it from its first call (container images, CI). The cache is $IFA_RT_CACHE, else
$XDG_CACHE_HOME/ifa_rt/aoti (~/.cache/ifa_rt/aoti).
"""

from __future__ import annotations

import argparse
import os

from ..shapes import parse_shapes


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt prepare`."""
    parser.add_argument("model", nargs="?", help="bundled model name or .ifa.pt path")
    parser.add_argument("--shapes", type=parse_shapes, help="input sizes, e.g. 360x480,720x960")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "int8", "bf16"],
        help="auto (default): the fastest gated precision this CPU runs natively",
    )
    parser.add_argument("--threads", type=int, help="intra-op threads of the serving engine")
    parser.add_argument(
        "--max-batch", type=int, default=1, help="batched buckets up to this (with --batched)"
    )
    parser.add_argument(
        "--batched",
        action="store_true",
        help="compile batched buckets 1, 2, 4, .., max-batch (engines with batch_invariant=False)",
    )
    parser.add_argument("--list", action="store_true", help="list the cached packages")
    parser.add_argument("--clear", action="store_true", help="delete every cached package")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--nice", type=int, default=0, help=argparse.SUPPRESS)


def run_cli(args: argparse.Namespace) -> int:
    """Compile into the cache, or list / clear it."""
    from ..side_files import PACKAGE_SUFFIX, cache_dir

    if args.list or args.clear:
        packages = sorted(cache_dir().glob(f"*{PACKAGE_SUFFIX}")) if cache_dir().is_dir() else []
        for package in packages:
            print(f"{package}  {package.stat().st_size / 2**20:.1f} MiB")
            if args.clear:
                package.unlink()
        print(f"{'deleted' if args.clear else 'found'} {len(packages)} package(s) in {cache_dir()}")
        return 0
    if not args.model or not args.shapes:
        raise ValueError("prepare: expected a MODEL and --shapes (or --list / --clear)")
    if args.nice:
        os.nice(args.nice)  # a background tier-up compile yields the cores to serving
    from ..bundled import resolve
    from ..deploy.packages import prepare_package
    from ..runtime.prepare import choose, int8_blocker

    path = resolve(args.model, "prepare")
    settings = {
        "precision": args.precision,
        "runtime": "aoti",
        "shapes": args.shapes,
        "threads": args.threads,
        "max_batch": args.max_batch,
        "batch_invariant": not args.batched,
    }
    choice = choose(path, settings)
    if args.precision == "int8":
        why, _ = int8_blocker(path, settings, "aoti")
        if why:
            raise ValueError(f"prepare: 'precision': int8 cannot run here: {why}")
    for name, why in choice.skipped.items():
        print(f"{name}: skipped: {why}")
    package = prepare_package(path, settings, choice.precision, show_progress=not args.quiet)
    print(f"{choice.precision} package ready: {package}")
    return 0
