"""What the runtime accepts as an image: numpy arrays, PIL images and CPU torch tensors.

Shared by `Segmenter` and `Batcher` (one place for the input rules of docs/reliability.md),
below both so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_array", "type_name"]


def type_name(x: Any) -> str:
    """The short type name quoted in error messages."""
    return type(x).__name__


def as_array(x: Any, where: str, name: str) -> np.ndarray:
    """A numpy view of one image or batch (no copy for numpy and CPU torch tensors)."""
    if isinstance(x, np.ndarray):
        array = x
    elif _is_pil(x):
        array = np.asarray(x if x.mode == "RGB" else x.convert("RGB"))
    elif _is_torch(x):
        import torch

        if x.dtype != torch.uint8:
            dtype = str(x.dtype).removeprefix("torch.")
            raise ValueError(f"{where}: input '{name}': expected dtype uint8, got {dtype}")
        array = x.detach().cpu().numpy()
    else:
        raise TypeError(
            f"{where}: input '{name}': expected a numpy array, PIL image or torch tensor "
            f"(or a list of them), got {type_name(x)}"
        )
    if any(s < 0 for s in array.strides):  # torch views cannot have negative strides
        array = np.ascontiguousarray(array)
    return array


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(x, Image.Image)


def _is_torch(x: Any) -> bool:
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)
