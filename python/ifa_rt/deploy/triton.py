"""A Triton Inference Server model repository for the PyTorch (LibTorch) backend.

Layout: ``REPO/<name>/config.pbtxt`` and ``REPO/<name>/1/model.pt`` (the artifact as is: its
``forward`` takes uint8 [B,H,W,3] and returns uint8 labels [B,H,W]). Triton batches only
requests of equal shape, so dynamic batching gathers same-size images.

With ``shape=(H, W)`` the model is instead an AOTInductor package ``1/model.pt2`` for the
``torch_aoti`` platform (same backend, compiled for this machine; one input shape, any batch
up to max_batch_size): the fast CPU form, see docs/benchmarks.md.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .artifact import load_artifact

__all__ = ["compile_triton_model", "triton_config", "write_triton_repository"]

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
_KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}


def triton_config(
    name: str,
    *,
    max_batch_size: int = 8,
    instances: int = 1,
    kind: str = "cpu",
    max_queue_delay_us: int = 2000,
    shape: tuple[int, int] | None = None,
) -> str:
    """The config.pbtxt text for an ifa_rt artifact served by Triton's PyTorch backend.

    `shape` (H, W) selects the `torch_aoti` platform with fixed image dims.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"triton: 'name': expected letters, digits, '_', '.', '-', got {name!r}")
    if max_batch_size < 1:
        raise ValueError(f"triton: 'max_batch_size': expected >= 1, got {max_batch_size}")
    if instances < 1:
        raise ValueError(f"triton: 'instances': expected >= 1, got {instances}")
    if kind not in _KINDS:
        raise ValueError(f"triton: 'kind': expected one of {sorted(_KINDS)}, got {kind!r}")
    preferred = [b for b in (1, 2, 4, 8, 16, 32) if b <= max_batch_size]
    platform, h, w = "pytorch_libtorch", -1, -1
    if shape is not None:
        platform, (h, w) = "torch_aoti", shape
    return f"""name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_UINT8
    dims: [ {h}, {w}, 3 ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_UINT8
    dims: [ {h}, {w} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(map(str, preferred))} ]
  max_queue_delay_microseconds: {max_queue_delay_us}
}}
instance_group [
  {{
    count: {instances}
    kind: {_KINDS[kind]}
  }}
]
parameters: {{
  key: "INFERENCE_MODE"
  value: {{ string_value: "true" }}
}}
"""


def write_triton_repository(
    artifact: str | Path,
    repo: str | Path,
    *,
    name: str | None = None,
    max_batch_size: int = 8,
    instances: int = 1,
    kind: str = "cpu",
    max_queue_delay_us: int = 2000,
    shape: tuple[int, int] | None = None,
) -> Path:
    """Write ``repo/<name>/{config.pbtxt, 1/model.pt}`` for an artifact; return the model dir.

    With `shape`, ``1/model.pt2`` is the artifact compiled by AOTInductor (`torch_aoti`).
    """
    _, meta = load_artifact(artifact)  # refuse anything that is not a valid artifact
    name = name or (meta.get("preset") or Path(artifact).name.split(".")[0])
    config = triton_config(
        name,
        max_batch_size=max_batch_size,
        instances=instances,
        kind=kind,
        max_queue_delay_us=max_queue_delay_us,
        shape=shape,
    )
    model_dir = Path(repo) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    if shape is None:
        shutil.copyfile(artifact, model_dir / "1" / "model.pt")
    else:
        compile_triton_model(
            artifact, model_dir / "1" / "model.pt2", shape=shape, max_batch=max_batch_size
        )
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir


def compile_triton_model(
    artifact: str | Path,
    path: str | Path,
    *,
    shape: tuple[int, int],
    max_batch: int,
    threads: int | None = None,
) -> Path:
    """A `.pt2` for Triton's `torch_aoti` platform: one model named "model", batch dynamic.

    Triton's dynamic batcher sends any batch size up to max_batch_size, and its PyTorch
    backend loads the package's default model, so this package has one model whose batch is
    symbolic (1..max_batch) at one input shape (Triton batches only equal-shaped requests).
    """
    import json

    import torch
    from torch.export.pt2_archive._package import PT2ArchiveWriter, _package_aoti_files

    from .aoti import _compile_bucket, machine_facts
    from .metadata import EXTRA_FILE
    from .rebuild import rebuild_from_artifact

    wrapper, meta = rebuild_from_artifact(artifact)
    threads = int(threads or torch.get_num_threads())
    height, width = int(shape[0]), int(shape[1])
    # An example batch of 1 would specialise the batch dimension (0/1 specialisation).
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        files = _compile_bucket(wrapper, 2, height, width, max_batch=max(max_batch, 2))
    finally:
        torch.set_num_threads(previous)
    meta = dict(meta)
    meta["engine"] = "aoti-triton"
    meta["triton"] = {**machine_facts(), "shape": [height, width], "max_batch": max_batch}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with PT2ArchiveWriter(str(path)) as writer:
        _package_aoti_files(writer, {"model": files})
        writer.write_string(f"extra/{EXTRA_FILE}", json.dumps(meta))
    return path
