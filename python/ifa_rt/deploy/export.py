"""Export an IFA model to the `.ifa.pt` artifact: scripted, uint8 NHWC in, labels out."""

from __future__ import annotations

import json
import logging
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
        form: "fused" (BN folded, decomposed IFA head; docs/model.md §4) or "reference".
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
