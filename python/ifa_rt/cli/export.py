"""`ifa-rt export`: a checkpoint, preset or bundled model to an artifact (TorchScript, AOTInductor
package, ONNX) and optionally a Triton model repository.

    ifa-rt export --model camvid -o camvid.ifa.pt                       # TorchScript (a copy)
    ifa-rt export --model camvid --format aoti --shapes 360x480 -o m.pt2
    ifa-rt export --model camvid --format onnx --shapes 360x480 -o camvid.onnx

The output's parent folders are created. An ONNX file serves one input size (its geometry is
baked in; the batch axis is dynamic): uint8 images [B,H,W,3] RGB in, uint8 labels [B,H,W] out
(`--onnx-output logits`: float32 [B,C,H,W]); the artifact's metadata (classes, palette,
mean/std, ...) travels in its `ifa_rt` metadata property.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..deploy.export import FORMATS, FORMS, export

EXPORT_FORMATS = (*FORMATS, "onnx")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt export`."""
    parser.add_argument(
        "--preset", help="model preset (see ifa_rt.presets()); default: from checkpoint"
    )
    parser.add_argument("--checkpoint", help="weights: our checkpoint or a reference one")
    parser.add_argument("-o", "--output", help="output file: .ifa.pt, .pt2 or .onnx (folders made)")
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
        choices=EXPORT_FORMATS,
        default="torchscript",
        help="torchscript (.ifa.pt, portable), aoti (.pt2 compiled for this machine) or onnx "
        "(.onnx for ONNX Runtime, one input size)",
    )
    parser.add_argument(
        "--shapes",
        help="aoti: input sizes to compile, e.g. 360x480,512x1024; onnx: the one input size "
        "(required for both)",
    )
    parser.add_argument(
        "--onnx-output",
        choices=("labels", "logits"),
        default="labels",
        help="onnx: uint8 labels [B,H,W] (default) or float32 logits [B,C,H,W]",
    )
    parser.add_argument("--threads", type=int, help="aoti: intra-op threads (default: torch's)")
    parser.add_argument("--num-classes", type=int, help="override the preset's class count")
    parser.add_argument("--dataset", help="take class names and palette from this dataset")


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt export`."""
    if not (args.output or args.triton):
        raise ValueError("export: give -o ARTIFACT, --triton REPO or both")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    if args.format == "onnx":
        return _onnx_cli(args)
    if args.model:
        from ..bundled import resolve

        artifact = resolve(args.model, where="export")
        if args.format == "aoti":
            return _compile_cli(args, artifact)
        if args.output:
            shutil.copyfile(artifact, args.output)
            print(f"wrote {args.output}: a copy of the bundled model '{args.model}'")
        return _maybe_triton(args, artifact)
    model = _model_from_args(args, "export: give --preset, --checkpoint or both")
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


def _onnx_cli(args: argparse.Namespace) -> int:
    """`ifa-rt export --format onnx`: the model's fused form traced to ONNX at one input size."""
    from ..shapes import parse_shapes

    if not args.shapes or not args.output or args.triton:
        raise ValueError("export: --format onnx needs --shapes HxW and -o FILE.onnx (no --triton)")
    shapes = parse_shapes(args.shapes)
    if len(shapes) != 1:
        raise ValueError(
            f"export: '--shapes': --format onnx serves one input size (its geometry is baked "
            f"in), got {len(shapes)}: {args.shapes}"
        )
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            "export: --format onnx needs the onnx package; install it with `pip install onnx` "
            "(and onnxruntime to run the file)"
        ) from exc
    from ..deploy.onnx_export import export_onnx

    model, meta = _onnx_source(args)
    (height, width), output = shapes[0], Path(args.output)
    export_onnx(
        model,
        output,
        height=height,
        width=width,
        output=args.onnx_output,
        form=args.form,
        mean=tuple(meta["mean"]),
        std=tuple(meta["std"]),
    )
    # Classes, palette and normalisation travel with the file, as in the TorchScript artifact.
    proto = onnx.load(str(output))
    record = dict(meta, form=args.form, input_size=[height, width], output=args.onnx_output)
    proto.metadata_props.add(key="ifa_rt", value=json.dumps(record))
    onnx.save(proto, str(output))
    print(
        f"wrote {output}: ONNX, uint8 [B,{height},{width},3] -> {args.onnx_output}, "
        f"{meta['num_classes']} classes, {args.form} form; {_ort_check(output, height, width)}"
    )
    return 0


def _model_from_args(args: argparse.Namespace, missing: str) -> Any:
    """The eager model of --checkpoint (with --preset's settings), else a fresh --preset."""
    from ..deploy.checkpoint import load_checkpoint
    from ..model import build_model

    if args.checkpoint:
        return load_checkpoint(args.checkpoint, preset=args.preset)
    if args.preset:
        overrides = {"num_classes": args.num_classes} if args.num_classes else {}
        return build_model(args.preset, **overrides)
    raise ValueError(missing)


def _onnx_source(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The eager model to trace and the metadata it carries: a bundled model (or an artifact
    with its `.ckpt.pt` beside it) through its training checkpoint, else --checkpoint/--preset."""
    from ..deploy.checkpoint import load_checkpoint

    if args.model:
        from ..bundled import resolve
        from ..deploy.artifact import load_artifact
        from ..side_files import beside

        artifact = resolve(args.model, where="export")
        checkpoint = beside(artifact, ".ckpt.pt")
        if not checkpoint.is_file():
            raise ValueError(
                f"export: --format onnx traces the model from its weights: expected "
                f"'{checkpoint}' beside '{artifact}', or --checkpoint CKPT instead of --model"
            )
        _, meta = load_artifact(artifact)
        return load_checkpoint(str(checkpoint)), meta
    model = _model_from_args(args, "export: give --model, --preset, --checkpoint or both")
    # The metadata by the TorchScript exporter's own rules (class names and palette from the
    # preset's dataset, the training record): one place decides them, at the cost of a script.
    with tempfile.TemporaryDirectory(prefix="ifa_rt_export_") as tmp:
        meta = export(
            model,
            Path(tmp) / "model.ifa.pt",
            preset=args.preset,
            dataset=args.dataset,
            form=args.form,
            verify=False,
        )
    return model, meta


def _ort_check(path: Path, height: int, width: int) -> str:
    """Load the file in ONNX Runtime and run one image: what the print-out says about it."""
    import numpy as np

    from ..deploy.onnx_export import onnx_session

    try:
        session = onnx_session(path, threads=1, spinning=False)
    except ImportError:
        return "onnxruntime is not installed: not run"
    out = session.run(None, {"images": np.zeros((1, height, width, 3), np.uint8)})[0]
    return f"onnxruntime runs it ({out.dtype} {list(out.shape)})"


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
