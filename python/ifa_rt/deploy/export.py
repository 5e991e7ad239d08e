"""Export an IFA model to the `.ifa.pt` artifact: scripted, uint8 NHWC in, labels out."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .artifact import ImageSegmenter, _Predict, load_artifact
from .metadata import DEFAULT_MEAN, DEFAULT_STD, EXTRA_FILE, build_metadata

__all__ = ["ImageSegmenter", "export", "load_artifact"]

log = logging.getLogger(__name__)
FORMS = ("fused", "reference")
FORMATS = ("torchscript", "aoti")


def _inference_net(model: nn.Module, form: str) -> nn.Module:
    """The network the artifact runs: the exact fused form (default) or the model as is."""
    if form not in FORMS:
        raise ValueError(f"export: 'form': expected one of {list(FORMS)}, got {form!r}")
    model = model.eval()
    if form == "reference":
        return _Predict(model)
    from .fuse import fuse_model

    return fuse_model(model)


def export(
    model: nn.Module,
    path: str | Path,
    *,
    classes: list[str] | None = None,
    palette: list[list[int]] | None = None,
    preset: str | None = None,
    dataset: str | None = None,
    form: str = "fused",
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
    verify: bool = True,
    format: str = "torchscript",
    shapes: list[tuple[int, int]] | None = None,
    max_batch: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """Script `model` (an IFA segmentor) into an artifact at `path`; return its metadata.

    Args:
        model: takes normalised float [B,3,H,W], returns logits [B,C,H,W] at the input size.
        path: where to write the `.ifa.pt` file (parent folders are created).
        classes: class names (default: class_0 …); palette: one [r, g, b] per class.
        preset: the preset name recorded in the metadata (default: the model's own).
        dataset: take default class names and palette from this dataset (default: the
            preset's prefix, e.g. "camvid" for "camvid-lite0", when it names a known dataset).
        form: "fused" (BN folded, decomposed IFA head; IFA_SPEC §4) or "reference".
        verify: load the file back and check it reproduces the eager logits.
        format: "torchscript" (the portable `.ifa.pt`, default) or "aoti": an AOTInductor
            package (`.pt2`) compiled for this machine, one model per (batch, shape) bucket
            of `shapes` x {1, 2, 4, .., max_batch}, with `threads` intra-op threads; the
            fastest CPU form (docs/benchmarks.md). It holds the TorchScript artifact too,
            which serves unplanned shapes and logits.
    """
    if format not in FORMATS:
        raise ValueError(f"export: 'format': expected one of {list(FORMATS)}, got {format!r}")
    if format == "aoti":
        from .aoti import FALLBACK_FILE, compile_artifact, read_package_metadata

        if form != "fused":
            raise ValueError(f"export: 'form': format 'aoti' compiles the fused form, got {form!r}")
        with tempfile.TemporaryDirectory(prefix="ifa_rt_aoti_") as tmp:
            staged = Path(tmp) / FALLBACK_FILE  # the package's TorchScript fallback
            export(
                model,
                staged,
                classes=classes,
                palette=palette,
                preset=preset,
                dataset=dataset,
                mean=mean,
                std=std,
                verify=verify,
            )
            compile_artifact(
                staged, shapes=shapes or [], max_batch=max_batch, threads=threads, output=path
            )
        return read_package_metadata(path)
    cfg = getattr(model, "cfg", None)
    config = cfg.to_dict() if cfg is not None and hasattr(cfg, "to_dict") else {}
    num_classes = int(config.get("num_classes") or _probe_num_classes(model))
    preset = preset or getattr(model, "preset", None)
    known_classes, known_palette = _class_facts(dataset, preset, num_classes)
    meta = build_metadata(
        training=training_record(model),
        num_classes=num_classes,
        classes=classes if classes is not None else known_classes,
        palette=palette if palette is not None else known_palette,
        preset=preset,
        config=config,
        form=form,
        mean=mean,
        std=std,
    )
    wrapper = ImageSegmenter(_inference_net(model, form), mean, std).eval()
    scripted = torch.jit.script(wrapper)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(path), _extra_files={EXTRA_FILE: json.dumps(meta)})
    if verify:
        _verify(model, path, mean, std)
    log.info("exported %s (%s form, %d classes)", path, form, num_classes)
    return meta


def training_record(model: nn.Module) -> dict[str, Any] | None:
    """How the weights were made, from the checkpoint they came from (None when unknown).

    Recipe, data, steps, validation metrics, source commit and the checkpoint's sha256, so
    an artifact found on a disk can be traced back to a reproducible training run.
    """
    meta = dict(getattr(model, "checkpoint_meta", None) or {})
    facts = dict(meta.get("training") or {})
    if not facts:
        return None
    val = meta.get("val") or {}
    facts.update(
        steps=meta.get("step"),
        validation={k: val[k] for k in ("miou", "pixel_accuracy", "per_class_iou") if k in val},
        checkpoint_sha256=meta.get("checkpoint_sha256"),
    )
    if facts.get("recipe"):
        facts["recipe"] = {"file": facts["recipe"].get("file")}  # its text lives in the card
    return facts


def _probe_num_classes(model: nn.Module) -> int:
    """Number of classes read off one tiny forward pass, for models without a config."""
    with torch.no_grad():
        return int(model.eval()(torch.zeros(1, 3, 64, 64)).shape[1])


def _verify(model: nn.Module, path: Path, mean, std) -> None:
    """Check the saved artifact reproduces the eager model on one odd-sized input."""
    module, _ = load_artifact(path)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, 67, 93, 3), dtype=torch.uint8, generator=generator)
    reference = ImageSegmenter(model.eval(), mean, std).eval()
    with torch.no_grad():
        want = reference.logits(images)
        got = module.logits(images)
    scale = want.abs().max().clamp_min(1e-6)
    err = float((got - want).abs().max() / scale)
    if err > 1e-4:
        raise RuntimeError(
            f"export: artifact '{path}' does not reproduce the model: "
            f"max |Δlogit| / scale = {err:.2e} > 1e-4"
        )


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
    from ..model import build_model
    from .checkpoint import load_checkpoint

    if not (args.output or args.triton):
        raise ValueError("export: give -o ARTIFACT, --triton REPO or both")
    if args.model:
        from ..models import resolve

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
    from ..shapes import parse_shapes
    from .aoti import compile_artifact

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
        from .triton import write_triton_repository

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


def _class_facts(dataset: str | None, preset: str | None, num_classes: int):
    """Class names and palette of a named dataset, or of the preset's dataset prefix if known."""
    from ..data.facts import DATASETS

    name = dataset or (preset or "").split("-")[0]
    info = DATASETS.get(name)
    if info is None:
        if dataset:
            raise ValueError(
                f"export: 'dataset': expected one of {sorted(DATASETS)}, got {dataset!r}"
            )
        return None, None
    if info.num_classes != num_classes:
        if dataset:
            raise ValueError(
                f"export: 'dataset': {name} has {info.num_classes} classes, "
                f"but the model predicts {num_classes}"
            )
        return None, None
    return list(info.classes), [list(c) for c in info.palette]
