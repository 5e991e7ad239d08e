"""AOTInductor packages (`.pt2`): the artifact compiled ahead of time for this machine.

A package holds, in one PT2 archive (docs/artifact.md, "AOTInductor packages"), compiled for
the CPU or (``compile_package(..., device="cuda")``) for this machine's GPU:
  - one compiled model per planned bucket, named ``labels_<B>x<H>x<W>`` (static shapes: they
    measured faster than one model with a dynamic batch, 35 vs 42 ms on camvid-lite0);
  - ``extra/ifa_rt.json``: the artifact metadata plus an ``aoti`` block (buckets, precision,
    device, CPU ISA or GPU, torch version, threads) that the C++ runtime checks before loading;
  - ``ifa_rt/fallback.ifa.pt``: the portable TorchScript artifact, which the runtime uses for
    what was not compiled (unplanned shapes, logits), so the Segmenter API stays whole.

Compilation runs ``torch.export`` (non-strict) on the exact fused form with the per-shape
geometry already cached, then ``torch._inductor.aot_compile`` with freezing under
``torch.no_grad()`` (freezing is skipped when grad mode is on: convolutions then do not get
oneDNN's prepacked weights, measured 1.2x slower).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..side_files import PACKAGE_SUFFIX, compiled_cached_path
from .aoti_cuda import compile_device, cuda_facts
from .artifact import CoarseSegmenter
from .metadata import EXTRA_FILE
from .rebuild import rebuild_from_artifact

__all__ = [
    "FALLBACK_FILE",
    "bucket_batches",
    "compile_artifact",
    "compile_package",
    "compile_with_progress",
    "aot_compile",
    "export_graph",
    "machine_facts",
    "model_name",
    "read_package_metadata",
]

log = logging.getLogger(__name__)
FALLBACK_FILE = "fallback.ifa.pt"
# Not under extra/: torch.export.pt2_archive reads every extra file as UTF-8 text.
FALLBACK_RECORD = f"ifa_rt/{FALLBACK_FILE}"


def bucket_batches(max_batch: int) -> list[int]:
    """Planned batch sizes 1, 2, 4, .., max_batch (the same rule as the C++ plan)."""
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    out.append(max_batch)
    return out


def model_name(batch: int, height: int, width: int) -> str:
    """The name of one bucket's compiled model inside a package."""
    return f"labels_{batch}x{height}x{width}"


def machine_facts(device: str = "cpu") -> dict[str, str]:
    """What a package depends on: the vector ISA inductor compiled for (a CUDA package: the
    GPU, `aoti_cuda.cuda_facts`), the machine, torch."""
    if device != "cpu":
        return cuda_facts(device)
    from torch._inductor import cpu_vec_isa

    isa = cpu_vec_isa.pick_vec_isa()
    return {
        "device": "cpu",
        "cpu_isa": str(isa) if isa else "none",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "machine": platform.machine(),
        "torch_version": torch.__version__,
    }


def export_graph(wrapper: nn.Module, images: torch.Tensor, dynamic: Any = None) -> nn.Module:
    """The `torch.export` graph of `wrapper` at the shape of `images` (geometry cached first:
    a cached tensor becomes a constant of the graph; ones made under inference_mode could not
    be captured)."""
    with torch.no_grad():
        wrapper(images)
        program = torch.export.export(wrapper, (images,), dynamic_shapes=dynamic, strict=False)
    try:
        return program.module(check_guards=False)
    except TypeError:  # torch < 2.12 has no check_guards
        return program.module()


def aot_compile(graph: nn.Module, images: torch.Tensor) -> list:
    """AOTInductor files of an exported graph, with freezing (applied only under no_grad)."""
    with torch.no_grad():
        options = {"aot_inductor.package": True, "freezing": True}
        return torch._inductor.aot_compile(graph, (images,), options=options)


def _compile_bucket(
    wrapper: nn.Module, batch: int, height: int, width: int, max_batch: int = 0, device: str = "cpu"
):
    """AOTInductor files of one labels model on `device` (where `wrapper` is): static shape,
    or a dynamic batch up to `max_batch` when that is given (what Triton's dynamic batcher
    needs)."""
    images = torch.zeros(batch, height, width, 3, dtype=torch.uint8, device=device)
    dynamic = None
    if max_batch:
        dynamic = {"images": {0: torch.export.Dim("batch", min=1, max=max_batch)}}
    graph = export_graph(wrapper, images, dynamic)
    return aot_compile(graph, images)


def compile_package(
    wrapper: nn.Module,
    meta: dict[str, Any],
    fallback: str | Path,
    path: str | Path,
    *,
    shapes: Sequence[tuple[int, int]],
    max_batch: int = 1,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    precision: str = "fp32",
    compile_bucket: Callable[[int, int, int], list] | None = None,
    extra: dict[str, Any] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Compile one model per (batch, shape) bucket into the package at `path`; its metadata.

    `wrapper` is the eager `ImageSegmenter` of the fused form, `meta` its artifact metadata and
    `fallback` the TorchScript artifact stored inside the package. `compile_bucket(b, h, w)`
    replaces the fp32 compile of one bucket (the int8 path, `deploy/quantize.py`), `precision`
    names what it produces and `extra` is merged into the metadata. `device` "cuda" (or
    "cuda:N") compiles on that GPU, for GPUs of its kind: a copy of `wrapper` is moved there,
    each bucket is exported and compiled with inputs on it (freezing on), and the package is
    served by `ifa_rt.Segmenter(path, device="cuda")`.
    """
    from torch.export.pt2_archive._package import PT2ArchiveWriter, _package_aoti_files

    device = compile_device(device, custom=compile_bucket is not None or precision == "int8")
    path = Path(path)
    if path.suffix != PACKAGE_SUFFIX:
        raise ValueError(
            f"export: 'path': expected a file name ending in {PACKAGE_SUFFIX}, got '{path}'"
        )
    if not shapes:
        raise ValueError("export: 'shapes': expected at least one (height, width) to compile")
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"export: 'max_batch': expected an int >= 1, got {max_batch!r}")
    threads = int(threads or torch.get_num_threads())
    if compile_bucket is None:
        if device != "cpu":
            wrapper = copy.deepcopy(wrapper).to(device)  # the caller's module stays where it is

        def compile_bucket(b: int, h: int, w: int) -> list:
            return _compile_bucket(wrapper, b, h, w, device=device)

    buckets = [(b, int(h), int(w)) for h, w in shapes for b in bucket_batches(max_batch)]
    files: dict[str, list] = {}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)  # inductor sizes its parallel loops for these threads
    try:
        for b, h, w in buckets:
            files[model_name(b, h, w)] = compile_bucket(b, h, w)
            if progress:
                progress(model_name(b, h, w))
    finally:
        torch.set_num_threads(previous)
    package_meta = dict(meta)
    package_meta.update(extra or {})
    package_meta["engine"] = "aoti"
    package_meta["aoti"] = {
        **machine_facts(device),
        "precision": precision,
        # What each model returns: "coarse_logits" (the runtime upsamples and takes labels,
        # CoarseSegmenter) or "labels".
        "output": "coarse_logits" if isinstance(wrapper, CoarseSegmenter) else "labels",
        "threads": threads,
        "buckets": [list(b) for b in buckets],
        "fallback": FALLBACK_RECORD,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # concurrent compiles
    with PT2ArchiveWriter(str(partial)) as writer:
        _package_aoti_files(writer, files)
        writer.write_string(f"extra/{EXTRA_FILE}", json.dumps(package_meta))
        writer.write_file(FALLBACK_RECORD, str(fallback))
    os.replace(partial, path)  # a reader never sees a half-written package
    return package_meta


def read_package_metadata(path: str | Path) -> dict[str, Any]:
    """The `ifa_rt.json` of a `.pt2` package (validated like an artifact's)."""
    import zipfile

    from .metadata import parse_metadata

    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}")]
        raw = archive.read(names[0]).decode() if names else ""
    return parse_metadata(raw, source=str(path))


def compile_with_progress(
    wrapper: nn.Module,
    meta: dict[str, Any],
    artifact: Path,
    target: Path,
    shapes: Sequence[tuple[int, int]],
    max_batch: int,
    threads: int,
    what: str,
    show_progress: bool,
    **package: Any,
) -> dict[str, Any]:
    """`compile_package` with a progress bar of its buckets (`package`: its other arguments)."""
    from tqdm.auto import tqdm

    total = len(shapes) * len(bucket_batches(max_batch))
    with tqdm(total=total, desc=f"ifa_rt: {what} compile", disable=not show_progress) as bar:

        def compiled(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        return compile_package(
            wrapper,
            meta,
            artifact,
            target,
            shapes=shapes,
            max_batch=max_batch,
            threads=threads,
            progress=compiled,
            **package,
        )


def compile_artifact(
    artifact: str | Path,
    *,
    shapes: Sequence[tuple[int, int]],
    max_batch: int = 1,
    threads: int | None = None,
    output: str | Path | None = None,
    show_progress: bool = True,
    precision: str = "fp32",
) -> Path:
    """The AOTInductor package of a TorchScript artifact, compiled once per machine and plan;
    `precision` "bf16" computes in bfloat16 (the graph follows `mean`; behind its gate, on
    CPUs with native bf16).

    Without `output` the package goes to the cache (`ifa_rt.side_files.cache_dir()`) under a
    key of the artifact's bytes, shapes, max batch, threads, CPU ISA and torch version (like a
    TensorRT engine cache): a second call with the same key returns at once.
    """
    if precision not in ("fp32", "bf16"):
        raise ValueError(
            f"export: 'precision': expected 'fp32' or 'bf16' for a compiled package (int8: "
            f"ifa_rt.quantize), got {precision!r}"
        )
    artifact = Path(artifact)
    threads = int(threads or torch.get_num_threads())
    shapes = [(int(h), int(w)) for h, w in shapes]
    if output is None:
        target = compiled_cached_path(artifact, shapes, max_batch, threads, precision)
        if target.is_file():
            return target
    else:
        target = Path(output)
    wrapper, meta = rebuild_from_artifact(artifact, coarse=True)
    if precision == "bf16":
        wrapper = wrapper.to(torch.bfloat16)
    compile_with_progress(
        wrapper,
        meta,
        artifact,
        target,
        shapes,
        max_batch,
        threads,
        f"AOTInductor {precision}",
        show_progress,
        precision=precision,
    )
    log.info("compiled %s -> %s", artifact, target)
    return target
