"""The runtime: the C++ engines behind `Segmenter`, `SegmenterPool` and the batcher, and the one
place that decides what serves a model (`prepare`).

Modules here load the compiled extension (`extension`, after its torch check) and read side
files (`ifa_rt.side_files`); none imports deploy or training. `precision` and `prepare` load
nothing compiled until an engine is built, so deploy's writers can use them.
"""

from __future__ import annotations

import importlib

__all__ = ["Segmenter", "SegmenterPool"]


def __getattr__(name: str):
    """`Segmenter` and `SegmenterPool`, loading the extension on first use."""
    if name in __all__:
        return getattr(importlib.import_module("ifa_rt.runtime.segmenter"), name)
    raise AttributeError(f"module 'ifa_rt.runtime' has no attribute '{name}'")
