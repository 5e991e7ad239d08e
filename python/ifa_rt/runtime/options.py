"""Segmenter keyword arguments to C++ `ifa_rt::Options` (the defaults live once, in C++)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core
from .inputs import type_name as _type_name

__all__ = ["core_options", "shapes_text"]


def core_options(where: str, **kwargs: Any) -> _core.Options:
    """C++ Options from keyword arguments; None keeps the C++ default."""
    values: dict[str, str] = {}
    for key, value in kwargs.items():
        if value is None:
            continue
        if key == "shapes":
            values[key] = shapes_text(value, where)
        elif key in (
            "max_batch",
            "threads",
            "warmup",
            "shape_cache",
            "learn_shapes",
            "trim_heap_mb",
            "mmap_threshold_kb",
        ):
            # Before the bool branch: True is an int to Python but not a count.
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{where}: '{key}': expected an int, got {_type_name(value)}")
            values[key] = str(int(value))
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        elif isinstance(value, str):
            values[key] = value
        else:
            raise TypeError(f"{where}: '{key}': expected a str, got {_type_name(value)}")
    return _core.Options.from_map(values)


def shapes_text(shapes: Any, where: str) -> str:
    """Planned shapes checked for type, as the C++ option text "360x480,512x1024"."""
    if isinstance(shapes, (str, bytes)) or not isinstance(shapes, Sequence):
        raise TypeError(
            f"{where}: 'shapes': expected a list of (height, width) pairs, got {_type_name(shapes)}"
        )
    items = []
    for s in shapes:
        if (
            not isinstance(s, Sequence)
            or len(s) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in s)
        ):
            raise TypeError(
                f"{where}: 'shapes': expected a list of (height, width) int pairs, got {s!r}"
            )
        items.append(f"{int(s[0])}x{int(s[1])}")
    return ",".join(items)
