"""ifa_rt: a low-latency LibTorch runtime for IFA semantic segmentation (Hu et al., ECCV 2022)."""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("ifa-rt")
except _metadata.PackageNotFoundError:  # a source tree, not installed
    __version__ = "0+source"

__all__ = [
    "Segmenter",
    "SegmenterPool",
    "Options",
    "BatcherOptions",
    "export",
    "quantize",
    "load_checkpoint",
    "build_model",
    "presets",
    "bundled_models",
    "__version__",
]

# Public names resolve lazily so `import ifa_rt` stays cheap for users of the runtime alone.
_LAZY = {
    "Segmenter": "ifa_rt.runtime.segmenter",
    "SegmenterPool": "ifa_rt.runtime.segmenter",
    "Options": "ifa_rt.runtime.options",
    "BatcherOptions": "ifa_rt.runtime.options",
    "bundled_models": "ifa_rt.bundled",
    "export": "ifa_rt.deploy.export",
    "load_checkpoint": "ifa_rt.deploy.checkpoint",
    "build_model": "ifa_rt.model",
    "quantize": "ifa_rt.deploy.quantize",
    "presets": "ifa_rt.model",
}


def __getattr__(name: str):
    """Import a public name (or the `_core` extension, after its torch check) on first use."""
    if name == "_core":
        return importlib.import_module("ifa_rt.runtime.extension").core
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ifa_rt' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public API."""
    return sorted(set(globals()) | set(__all__))
