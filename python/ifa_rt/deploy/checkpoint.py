"""Checkpoints: reference IFA checkpoints (docs/model.md §2) and the project's own format.

Our format is a ``torch.save``-d dict::

    {'format': 'ifa_rt.checkpoint', 'version': 1, 'preset': str,
     'config': IFAConfig.to_dict(), 'state_dict': {...}, 'meta': {...}}   # meta optional

Reference checkpoints are ``{'epoch', 'model_state', 'optimizer_state'}`` saved from
DistributedDataParallel (every key starts with ``module.``); they carry no config, so the
preset is given by the caller.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..model import IFAConfig, IFASegmentor, build_model, get_preset

__all__ = [
    "FORMAT",
    "VERSION",
    "CheckpointMismatchError",
    "load_checkpoint",
    "make_reference_checkpoint",
    "save_checkpoint",
]

FORMAT = "ifa_rt.checkpoint"
VERSION = 1
DEFAULT_REFERENCE_PRESET = "cityscapes-r50"
_SHOW = 8  # keys shown per group in a mismatch message

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """Keys or shapes do not fit the model; the message groups missing/unexpected/mis-shaped."""


def _truncated(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (f", … and {len(items) - _SHOW} more" if len(items) > _SHOW else "")


def _mismatch_message(
    where: str, expected: Mapping[str, Tensor], got: Mapping[str, Tensor]
) -> str | None:
    missing = sorted(k for k in expected if k not in got)
    unexpected = sorted(k for k in got if k not in expected)
    misshaped = sorted(
        f"{k}: expected {list(expected[k].shape)}, got {list(got[k].shape)}"
        for k in expected
        if k in got and tuple(expected[k].shape) != tuple(got[k].shape)
    )
    if not (missing or unexpected or misshaped):
        return None
    lines = [
        f"{where}: state dict does not fit the model "
        f"({len(expected)} keys expected, {len(got)} given)"
    ]
    for name, items in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("mis-shaped", misshaped),
    ):
        if items:
            lines.append(f"  {name} ({len(items)}): {_truncated(items)}")
    return "\n".join(lines)


def _read(path: str) -> dict[str, Any]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_checkpoint: 'path': no such file '{path}'")
    if os.path.isdir(path):
        raise ValueError(
            f"load_checkpoint: 'path': expected a checkpoint file, got the directory '{path}'"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle/zip/runtime errors for non-checkpoints
        raise ValueError(
            f"load_checkpoint: '{path}' is not a readable torch checkpoint: {exc}"
        ) from exc
    if not isinstance(obj, dict):
        raise ValueError(
            f"load_checkpoint: '{path}': expected a dict checkpoint, got {type(obj).__name__}"
        )
    return obj


def _kind(obj: Mapping[str, Any], path: str) -> str:
    if obj.get("format") == FORMAT:
        if obj.get("version") != VERSION:
            raise ValueError(
                f"load_checkpoint: '{path}': expected {FORMAT} version {VERSION}, "
                f"got version {obj.get('version')!r}"
            )
        for key in ("preset", "config", "state_dict"):
            if key not in obj:
                raise ValueError(f"load_checkpoint: '{path}': {FORMAT} checkpoint lacks '{key}'")
        return "ours"
    if "model_state" in obj:
        return "reference"
    raise ValueError(
        f"load_checkpoint: '{path}' is not an IFA checkpoint: expected a dict with "
        f"'format': '{FORMAT}' or a reference 'model_state', "
        f"got keys {_truncated(sorted(map(str, obj)))}"
    )


def _strip_module(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    # DDP saves every key as 'module.<name>'; single-process saves have no prefix.
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _load_into(model: IFASegmentor, state: dict[str, Tensor], where: str) -> None:
    expected = model.state_dict()
    message = _mismatch_message(where, expected, state)
    if message is not None:
        raise CheckpointMismatchError(message)
    model.load_state_dict(state, strict=True)


def _bundled_checkpoint(path: str) -> str:
    """The shipped training checkpoint for a bundled model name ('camvid'), else `path`."""
    from ..bundled import BUNDLED_DIR, CHECKPOINT_SUFFIX

    bundled = BUNDLED_DIR / f"{path}{CHECKPOINT_SUFFIX}"
    if not os.path.exists(path) and os.sep not in path and bundled.is_file():
        return str(bundled)
    return path


def load_checkpoint(path: str, preset: str | None = None) -> IFASegmentor:
    """Load our checkpoint or a reference one (docs/model.md §2) into a model in eval mode.

    Args:
        path: checkpoint file, or a bundled model's name ("camvid") for the training
            checkpoint shipped with it (to fine-tune, re-export or quantize).
        preset: for reference checkpoints, the preset to build (default 'cityscapes-r50'; the
            class count follows the checkpoint). Ours carry their own preset and config, which win.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a checkpoint, or an unknown format version.
        CheckpointMismatchError: keys or shapes do not fit the model.
    """
    path = _bundled_checkpoint(os.fspath(path))
    obj = _read(path)
    if _kind(obj, path) == "ours":
        stored = obj["preset"]
        if preset is not None and preset != stored:
            log.warning(
                "load_checkpoint: '%s' was saved as preset %r; using its config, not %r",
                path,
                stored,
                preset,
            )
        cfg = IFAConfig.from_dict(obj["config"])
        # Weights come from the checkpoint: never fetch pretrained backbone weights to overwrite.
        model = IFASegmentor(cfg.replace(pretrained_backbone=False), preset=stored)
        model.cfg = cfg
        _load_into(model, dict(obj["state_dict"]), f"load_checkpoint: '{path}' (preset {stored!r})")
        from ..side_files import file_sha256

        model.checkpoint_meta = {**(obj.get("meta") or {}), "checkpoint_sha256": file_sha256(path)}
        return model.eval()

    if preset is None:
        preset = DEFAULT_REFERENCE_PRESET
        log.info(
            "load_checkpoint: '%s' is a reference checkpoint without a config; assuming preset %r",
            path,
            preset,
        )
    state = _strip_module(obj["model_state"])
    num_classes = _reference_num_classes(state)
    if num_classes is not None and num_classes != get_preset(preset).num_classes:
        log.info(
            "load_checkpoint: '%s' has %d classes; building preset %r with that many",
            path,
            num_classes,
            preset,
        )
    model = build_model(preset, num_classes=num_classes, pretrained_backbone=False)
    if not model.cfg.aux:
        aux_keys = [k for k in state if k.startswith("auxor.")]
        if aux_keys:
            log.info(
                "load_checkpoint: dropping %d training-only 'auxor.*' keys of '%s' "
                "(preset %r has no aux head)",
                len(aux_keys),
                path,
                preset,
            )
            state = {k: v for k, v in state.items() if not k.startswith("auxor.")}
    _load_into(model, state, f"load_checkpoint: '{path}' (reference, preset {preset!r})")
    model.checkpoint_meta = {"source": "reference", "epoch": obj.get("epoch")}
    return model.eval()


def _reference_num_classes(state: Mapping[str, Tensor]) -> int | None:
    # The last imnet conv is the only layer whose width is the class count.
    last = sorted(
        (int(k.split(".")[3]), k)
        for k in state
        if k.startswith("decoder.ifa.imnet.") and k.endswith(".weight") and state[k].dim() == 3
    )
    return int(state[last[-1][1]].shape[0]) if last else None


def save_checkpoint(
    model: IFASegmentor, path: str, *, preset: str, meta: dict[str, Any] | None = None
) -> None:
    """Save ``model`` in our format (see module docstring); ``load_checkpoint(path)`` rebuilds it.

    Args:
        model: an ``IFASegmentor`` (it carries its ``cfg``).
        path: output file (written atomically).
        preset: the preset name recorded with the config.
        meta: optional extra facts (training metrics, source checkpoint, …).
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, IFAConfig):
        raise ValueError(
            "save_checkpoint: 'model': expected an IFASegmentor with a .cfg, "
            f"got {type(model).__name__}"
        )
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(
            f"save_checkpoint: 'meta': expected a dict or None, got {type(meta).__name__}"
        )
    obj = {
        "format": FORMAT,
        "version": VERSION,
        "preset": preset,
        "config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if meta is not None:
        obj["meta"] = meta
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)  # a crash mid-save never leaves a truncated checkpoint


def make_reference_checkpoint(model: nn.Module, *, epoch: int = 0) -> dict[str, Any]:
    """The dict a reference DDP run would save for ``model``: ``module.``-prefixed (model.md §2)."""
    return {
        "epoch": epoch,
        "model_state": {f"module.{k}": v for k, v in model.state_dict().items()},
        "optimizer_state": {},
    }
