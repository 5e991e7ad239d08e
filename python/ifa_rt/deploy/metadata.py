"""The artifact's metadata (docs/artifact.md): built once here, checked by every runtime."""

from __future__ import annotations

import json
from typing import Any

from ..data.facts import IGNORE_INDEX
from ..data.facts import MEAN as DEFAULT_MEAN
from ..data.facts import STD as DEFAULT_STD

FORMAT_VERSION = 1
EXTRA_FILE = "ifa_rt.json"
REQUIRED_KEYS = ("format_version", "num_classes", "classes", "palette", "input")
MIN_INPUT_SIZE = 32


def default_palette(num_classes: int) -> list[list[int]]:
    """A deterministic, well-separated palette (the Pascal VOC bit-interleaving scheme)."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label + 1  # skip black so no class is invisible on an overlay
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append([r, g, b])
    return palette


def build_metadata(
    *,
    num_classes: int,
    classes: list[str] | None,
    palette: list[list[int]] | None,
    preset: str | None,
    config: dict[str, Any] | None,
    form: str,
    mean: tuple[float, ...] = DEFAULT_MEAN,
    std: tuple[float, ...] = DEFAULT_STD,
    ignore_index: int = IGNORE_INDEX,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble and validate the metadata dict of format version 1."""
    import torch

    from .. import __version__

    classes = list(classes) if classes is not None else [f"class_{i}" for i in range(num_classes)]
    palette = (
        [list(map(int, c)) for c in palette]
        if palette is not None
        else default_palette(num_classes)
    )
    if len(classes) != num_classes:
        raise ValueError(f"export: 'classes': expected {num_classes} names, got {len(classes)}")
    if len(palette) != num_classes or any(len(c) != 3 for c in palette):
        raise ValueError(
            f"export: 'palette': expected {num_classes} [r, g, b] triples, got {palette!r:.80}"
        )
    return {
        "format_version": FORMAT_VERSION,
        "ifa_rt_version": __version__,
        "torch_version": torch.__version__,
        "preset": preset,
        "config": config or {},
        "num_classes": num_classes,
        "classes": classes,
        "palette": palette,
        "ignore_index": ignore_index,
        "mean": list(mean),
        "std": list(std),
        "input": {
            "layout": "NHWC",
            "dtype": "uint8",
            "channels": 3,
            "color": "RGB",
            "min_size": MIN_INPUT_SIZE,
        },
        "outputs": {"forward": "labels uint8 [B,H,W]", "logits": "float32 [B,C,H,W]"},
        "form": form,
        **({"training": training} if training else {}),
    }


def parse_metadata(raw: str | bytes, *, source: str) -> dict[str, Any]:
    """Parse and validate artifact metadata; raise ValueError naming the artifact on any defect."""
    if not raw:
        raise ValueError(f"artifact '{source}': no '{EXTRA_FILE}' metadata; not an ifa_rt artifact")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"artifact '{source}': metadata is not valid JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"artifact '{source}': metadata: expected a JSON object, got {meta!r:.60}")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise ValueError(f"artifact '{source}': metadata lacks required keys {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"artifact '{source}': 'format_version': expected {FORMAT_VERSION}, "
            f"got {meta['format_version']!r} (exported by ifa_rt "
            f"{meta.get('ifa_rt_version', '?')}; upgrade ifa_rt to load it)"
        )
    return meta
