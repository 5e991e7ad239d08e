"""What the runtime accepts as an image: numpy arrays, PIL images, torch tensors and DLPack.

Shared by `Segmenter` and `Batcher` (one place for the input rules of docs/reliability.md),
below both so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_array", "cuda_tensor", "type_name"]

_DL_CPU, _DL_CUDA = 1, 2  # DLPack device types (dlpack.h: kDLCPU, kDLCUDA)


def type_name(x: Any) -> str:
    """The short type name quoted in error messages."""
    return type(x).__name__


def as_array(x: Any, where: str, name: str) -> np.ndarray:
    """A numpy view of one image or batch in host memory.

    No copy for numpy arrays, CPU torch tensors and host DLPack objects; device memory (a
    CUDA tensor or DLPack object) is copied to the host: only a CUDA engine takes it as is.
    """
    if isinstance(x, np.ndarray):
        array = x
    elif _is_pil(x):
        array = np.asarray(x if x.mode == "RGB" else x.convert("RGB"))
    elif _is_torch(x):
        _check_uint8(x, where, name)
        array = x.detach().cpu().numpy()
    elif _dlpack_device(x) == _DL_CPU:
        array = np.from_dlpack(x)
    elif _dlpack_device(x) == _DL_CUDA:
        return as_array(_torch_from_dlpack(x), where, name)
    else:
        raise TypeError(
            f"{where}: input '{name}': expected a numpy array, PIL image, torch tensor or "
            f"DLPack array in host or CUDA memory (or a list of them), got {type_name(x)}"
        )
    if any(s < 0 for s in array.strides):  # torch views cannot have negative strides
        array = np.ascontiguousarray(array)
    return array


def cuda_tensor(x: Any, where: str, name: str) -> Any:
    """The torch tensor behind an image or batch in CUDA memory (a CUDA torch tensor, or any
    DLPack array on a CUDA device, shared without a copy); None for host inputs."""
    if _is_torch(x):
        if not x.is_cuda:
            return None
    elif _dlpack_device(x) == _DL_CUDA:
        x = _torch_from_dlpack(x)
    else:
        return None
    _check_uint8(x, where, name)
    return x.detach()


def _check_uint8(x: Any, where: str, name: str) -> None:
    import torch

    if x.dtype != torch.uint8:
        dtype = str(x.dtype).removeprefix("torch.")
        raise ValueError(f"{where}: input '{name}': expected dtype uint8, got {dtype}")


def _dlpack_device(x: Any) -> int | None:
    """The DLPack device type of an object that exports DLPack (not numpy: handled first)."""
    device = getattr(x, "__dlpack_device__", None)
    if device is None or not hasattr(x, "__dlpack__"):
        return None
    return int(device()[0])


def _torch_from_dlpack(x: Any) -> Any:
    # torch.from_dlpack hands the producer torch's current stream, so pending writes to the
    # memory are ordered before whatever reads it next on that stream.
    import torch

    return torch.from_dlpack(x)


def _is_pil(x: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        return False
    return isinstance(x, Image.Image)


def _is_torch(x: Any) -> bool:
    torch = __import__("sys").modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)
