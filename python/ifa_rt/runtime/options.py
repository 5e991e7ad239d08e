"""`ifa_rt.Options` and `ifa_rt.BatcherOptions`: the C++ option structs, bound as typed classes.

    opts = ifa_rt.Options(shapes=[(360, 480)], max_batch=4)
    seg = ifa_rt.Segmenter("camvid", opts)                  # or Segmenter("camvid", shapes=...)
    fast = opts.replace(threads=2)                           # a validated copy

Fields, defaults, conversion and limits are declared once, in C++ (`ifa_rt::Options` in
cpp/include/ifa_rt/segmenter.h; bound in cpp/bindings/options_binding.cpp): a wrong type is a
TypeError and a bad value a ValueError, both naming the field.
"""

from __future__ import annotations

from typing import Any

from .extension import core as _core
from .inputs import type_name

__all__ = ["BatcherOptions", "Options", "resolve_options"]

Options = _core.Options
BatcherOptions = _core.BatcherOptions


def resolve_options(where: str, options: Any, overrides: dict[str, Any]) -> Options:
    """`options` (None: the defaults) with the keyword `overrides` applied, validated."""
    if options is None:
        return Options(**overrides)
    if not isinstance(options, Options):
        raise TypeError(f"{where}: 'options': expected an ifa_rt.Options, got {type_name(options)}")
    return options.replace(**overrides)
