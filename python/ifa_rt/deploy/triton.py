"""A Triton Inference Server model repository for the PyTorch (LibTorch) backend.

Layout: ``REPO/<name>/config.pbtxt`` and ``REPO/<name>/1/model.pt`` (the artifact as is: its
``forward`` takes uint8 [B,H,W,3] and returns uint8 labels [B,H,W]). Triton batches only
requests of equal shape, so dynamic batching gathers same-size images.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from .export import load_artifact

__all__ = ["triton_config", "write_triton_repository"]

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
) -> str:
    """The config.pbtxt text for an ifa_rt artifact served by Triton's PyTorch backend."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"triton: 'name': expected letters, digits, '_', '.', '-', got {name!r}")
    if max_batch_size < 1:
        raise ValueError(f"triton: 'max_batch_size': expected >= 1, got {max_batch_size}")
    if instances < 1:
        raise ValueError(f"triton: 'instances': expected >= 1, got {instances}")
    if kind not in _KINDS:
        raise ValueError(f"triton: 'kind': expected one of {sorted(_KINDS)}, got {kind!r}")
    preferred = [b for b in (1, 2, 4, 8, 16, 32) if b <= max_batch_size]
    return f"""name: "{name}"
platform: "pytorch_libtorch"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{INPUT_NAME}"
    data_type: TYPE_UINT8
    dims: [ -1, -1, 3 ]
  }}
]
output [
  {{
    name: "{OUTPUT_NAME}"
    data_type: TYPE_UINT8
    dims: [ -1, -1 ]
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
) -> Path:
    """Write ``repo/<name>/{config.pbtxt, 1/model.pt}`` for an artifact; return the model dir."""
    _, meta = load_artifact(artifact)  # refuse anything that is not a valid artifact
    name = name or (meta.get("preset") or Path(artifact).name.split(".")[0])
    config = triton_config(
        name,
        max_batch_size=max_batch_size,
        instances=instances,
        kind=kind,
        max_queue_delay_us=max_queue_delay_us,
    )
    model_dir = Path(repo) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, model_dir / "1" / "model.pt")
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir
