"""An artifact back to its eager module, and re-exported by the current exporter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .metadata import EXTRA_FILE

__all__ = ["reexport_artifact", "rebuild_from_artifact"]


def rebuild_from_artifact(
    path: str | Path, coarse: bool = False
) -> tuple[nn.Module, dict[str, Any]]:
    """The eager `ImageSegmenter` (fused form) equal to a TorchScript artifact, and its metadata;
    with `coarse`, its `CoarseSegmenter` (what compiled packages run).

    The artifact keeps the fused module's weights and attributes; the module structure comes
    from the preset config in its metadata, so no training checkpoint is needed.
    """
    from ..model import build_model
    from .artifact import CoarseSegmenter, ImageSegmenter, load_artifact
    from .fuse import fuse_model

    scripted, meta = load_artifact(path)
    if meta.get("form") != "fused" or not meta.get("preset"):
        raise ValueError(
            f"rebuild: artifact '{path}': expected a fused-form artifact with a preset, "
            f"got form {meta.get('form')!r}, preset {meta.get('preset')!r}"
        )
    config = dict(meta.get("config") or {})
    config["pretrained_backbone"] = False  # weights come from the artifact
    fused = fuse_model(build_model(meta["preset"], **config).eval())
    for attribute in ("pe_weight", "emb", "first_bias"):
        setattr(fused, attribute, getattr(scripted.net, attribute))
    kind = CoarseSegmenter if coarse else ImageSegmenter
    wrapper = kind(fused, tuple(meta["mean"]), tuple(meta["std"])).eval()
    wrapper.load_state_dict(scripted.state_dict(), strict=True)
    return wrapper, meta


def reexport_artifact(src: str | Path, dst: str | Path) -> dict[str, Any]:
    """Write `src` (a fused-form artifact) again with this exporter's graph; its metadata.

    Same weights and metadata (versions updated); the graph is today's fused form, so an
    artifact from an older ifa_rt gets its speed-ups without the training checkpoint.
    """
    from .. import __version__

    wrapper, meta = rebuild_from_artifact(src)
    meta = dict(meta, ifa_rt_version=__version__, torch_version=torch.__version__)
    scripted = torch.jit.script(wrapper)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(dst), _extra_files={EXTRA_FILE: json.dumps(meta)})
    return meta
