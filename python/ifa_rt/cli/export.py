"""`ifa-rt export`: a checkpoint, preset or bundled model to an artifact (TorchScript, AOTInductor
package) and optionally a Triton model repository."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from ..deploy.export import FORMATS, FORMS, export


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt export`."""
    parser.add_argument(
        "--preset", help="model preset (see ifa_rt.presets()); default: from checkpoint"
    )
    parser.add_argument("--checkpoint", help="weights: our checkpoint or a reference one")
    parser.add_argument("-o", "--output", help="artifact path (.ifa.pt)")
    parser.add_argument("--model", help="start from a bundled model (e.g. camvid) instead")
    parser.add_argument("--triton", metavar="REPO", help="also write a Triton model repository")
    parser.add_argument("--triton-name", help="model name in the Triton repository")
    parser.add_argument(
        "--max-batch", type=int, help="Triton max_batch_size (default 8); aoti: largest batch (1)"
    )
    parser.add_argument("--instances", type=int, default=1, help="Triton instance count")
    parser.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="Triton instances")
    parser.add_argument("--form", choices=FORMS, default="fused")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="torchscript",
        help="torchscript (.ifa.pt, portable) or aoti (.pt2 compiled for this machine)",
    )
    parser.add_argument(
        "--shapes", help="aoti: input sizes to compile, e.g. 360x480,512x1024 (required)"
    )
    parser.add_argument("--threads", type=int, help="aoti: intra-op threads (default: torch's)")
    parser.add_argument("--num-classes", type=int, help="override the preset's class count")
    parser.add_argument("--dataset", help="take class names and palette from this dataset")


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt export`."""
    from ..deploy.checkpoint import load_checkpoint
    from ..model import build_model

    if not (args.output or args.triton):
        raise ValueError("export: give -o ARTIFACT, --triton REPO or both")
    if args.model:
        from ..bundled import resolve

        artifact = resolve(args.model, where="export")
        if args.format == "aoti":
            return _compile_cli(args, artifact)
        if args.output:
            shutil.copyfile(artifact, args.output)
            print(f"wrote {args.output}: a copy of the bundled model '{args.model}'")
        return _maybe_triton(args, artifact)
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, preset=args.preset)
    elif args.preset:
        overrides = {"num_classes": args.num_classes} if args.num_classes else {}
        model = build_model(args.preset, **overrides)
    else:
        raise ValueError("export: give --preset, --checkpoint or both")
    if args.format == "aoti":
        with tempfile.TemporaryDirectory(prefix="ifa_rt_export_") as tmp:
            staged = Path(tmp) / "model.ifa.pt"
            export(model, staged, preset=args.preset, dataset=args.dataset, form=args.form)
            return _compile_cli(args, staged)
    output = Path(args.output) if args.output else Path(args.triton) / ".staging.ifa.pt"
    meta = export(model, output, preset=args.preset, dataset=args.dataset, form=args.form)
    print(f"wrote {output}: {meta['num_classes']} classes, {meta['form']} form")
    status = _maybe_triton(args, output)
    if not args.output:
        output.unlink()
    return status


def _compile_cli(args: argparse.Namespace, artifact: Path) -> int:
    """`ifa-rt export --format aoti`: compile a TorchScript artifact into a `.pt2` package."""
    from ..deploy.aoti import compile_artifact
    from ..shapes import parse_shapes

    if not args.shapes or not (args.output or args.triton):
        raise ValueError(
            "export: --format aoti needs --shapes HxW[,HxW..] and -o PACKAGE.pt2 or --triton REPO"
        )
    shapes = parse_shapes(args.shapes)
    if args.triton:
        if len(shapes) != 1:
            raise ValueError("export: --triton with --format aoti takes one --shapes HxW")
        _maybe_triton(args, artifact, shape=shapes[0])
        if not args.output:
            return 0
    package = compile_artifact(
        artifact,
        shapes=shapes,
        max_batch=args.max_batch or 1,
        threads=args.threads,
        output=args.output,
    )
    print(
        f"wrote {package}: AOTInductor package for {args.shapes}, max batch {args.max_batch or 1}"
    )
    return 0


def _maybe_triton(
    args: argparse.Namespace, artifact: Path, shape: tuple[int, int] | None = None
) -> int:
    """Write the Triton model repository when --triton was given."""
    if args.triton:
        from ..deploy.triton import write_triton_repository

        model_dir = write_triton_repository(
            artifact,
            args.triton,
            name=args.triton_name or args.model,
            max_batch_size=args.max_batch or 8,
            instances=args.instances,
            kind=args.kind,
            shape=shape,
        )
        model_file = "1/model.pt" if shape is None else "1/model.pt2"
        print(f"wrote Triton model {model_dir} (config.pbtxt, {model_file})")
    return 0
