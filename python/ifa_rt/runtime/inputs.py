"""What the runtime accepts as an image: numpy arrays, PIL images, torch tensors, DLPack and
image file paths, and the one rule that turns RGBA and grayscale into RGB.

Shared by `Segmenter` and `Batcher` (one place for the input rules of docs/reliability.md),
below both so neither imports the other.

Channel rule (host inputs; the same as Pillow's `convert("RGB")`), applied without a copy:
- `[H,W,3]` / `[B,H,W,3]`: RGB, as is.
- `[H,W,4]` / `[B,H,W,4]`: RGBA; the alpha channel is dropped (not blended over a
  background), a strided view of the first three channels.
- `[H,W]`, `[H,W,1]` / `[B,H,W,1]`: grayscale; the one channel is replicated to R = G = B,
  a zero-stride view. A rank-3 array is always read as one image, so a grayscale batch must
  be `[B,H,W,1]`.
- any other channel count (0, 2, 5, ..., or channels first) stays a ValueError from the engine:
  `expected 3 channels (RGB, last dimension), got 2 (shape [32,48,2])`.
A file path (`str` or `os.PathLike`) is decoded with Pillow exactly as
`np.asarray(Image.open(path).convert("RGB"))` (first frame; EXIF orientation not applied).
CUDA inputs are not converted: they must already be uint8 `[H,W,3]` / `[B,H,W,3]`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["as_array", "as_rgb", "cuda_tensor", "read_image", "type_name"]

_DL_CPU, _DL_CUDA = 1, 2  # DLPack device types (dlpack.h: kDLCPU, kDLCUDA)


def type_name(x: Any) -> str:
    """The short type name quoted in error messages."""
    return type(x).__name__


def as_array(x: Any, where: str, name: str, *, batch: bool = True) -> np.ndarray:
    """A numpy view of one image or batch in host memory, RGBA and grayscale made RGB.

    No copy for numpy arrays, CPU torch tensors and host DLPack objects; device memory (a
    CUDA tensor or DLPack object) is copied to the host: only a CUDA engine takes it as is.
    A file path is decoded (`read_image`). `batch=False` (an element of a list, which must
    be one image) leaves a rank-4 array as it is, for the engine to refuse by its shape.
    """
    if isinstance(x, (str, os.PathLike)):
        return read_image(x, where, name)
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
    return as_rgb(array, batch=batch)


def as_rgb(array: np.ndarray, *, batch: bool = True) -> np.ndarray:
    """RGBA / grayscale as an RGB view (the module's channel rule); anything else unchanged."""
    if array.ndim == 2:
        return np.broadcast_to(array[..., None], (*array.shape, 3))
    if array.ndim == 3 or (batch and array.ndim == 4):
        channels = array.shape[-1]
        if channels == 4:
            return array[..., :3]
        if channels == 1:
            return np.broadcast_to(array, (*array.shape[:-1], 3))
    # Every other shape goes to the engine, whose message names what was expected.
    return array


def read_image(path: str | os.PathLike, where: str, name: str) -> np.ndarray:
    """An image file decoded with Pillow as uint8 H×W×3 RGB; ValueError naming the file."""
    from PIL import Image

    shown = os.fspath(path)
    if not os.path.isfile(shown):
        why = "not a file" if os.path.exists(shown) else "no such file"
        raise ValueError(f"{where}: input '{name}': expected an image file, got '{shown}' ({why})")
    try:
        with Image.open(shown) as opened:
            return np.asarray(opened.convert("RGB"))
    except (OSError, Image.DecompressionBombError) as exc:  # OSError: unidentified, truncated
        raise ValueError(
            f"{where}: input '{name}': expected an image file Pillow can decode, "
            f"got '{shown}' ({exc})"
        ) from None


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
