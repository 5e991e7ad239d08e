"""HTTP payloads of `ifa-rt serve` (no Ray here, so they are testable without it).

Request body: one encoded image (PNG, JPEG, BMP: whatever Pillow reads), decoded to RGB
pixels as stored (EXIF orientation is not applied). Responses: a PNG of the class indices
with the artifact's palette attached (`format=png`, the default: viewers show colours, and
`np.array(Image.open(...))` gives the labels back), or JSON (`format=json`).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["FORMATS", "MAX_BODY_BYTES", "decode_image", "encode_png", "labels_json"]

FORMATS = ("png", "json")
# A 4K RGB image is ~25 MB as PNG; anything much bigger is not one camera frame.
MAX_BODY_BYTES = 64 * 2**20
# Larger decoded images are refused before decoding (a small file can decode to gigabytes).
MAX_PIXELS = 16384 * 16384


def decode_image(body: bytes) -> np.ndarray:
    """An encoded image -> uint8 H×W×3 RGB; ValueError saying what was wrong."""
    if not body:
        raise ValueError("serve: request body: expected an encoded image (PNG/JPEG), got 0 bytes")
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(
            f"serve: request body: expected at most {MAX_BODY_BYTES} bytes, got {len(body)}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body))
            if image.width * image.height > MAX_PIXELS:
                raise ValueError(f"{image.width}x{image.height} pixels is too large")
            return np.asarray(image.convert("RGB"))
    except Exception as exc:  # Pillow raises many types for undecodable data
        raise ValueError(
            f"serve: request body: expected an encoded image (PNG/JPEG), got {len(body)} bytes "
            f"that do not decode ({type(exc).__name__}: {_short(exc)})"
        ) from None


def _short(exc: Exception) -> str:
    """Pillow's message without the repr of our in-memory file."""
    return str(exc).replace(" <_io.BytesIO object", "").split(" at 0x")[0]


def encode_png(labels: np.ndarray, palette: list[list[int]]) -> bytes:
    """uint8 H×W class indices -> a palette PNG whose pixel values are the indices."""
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8), mode="P")
    flat = [v for rgb in palette for v in rgb]
    image.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=1)  # speed over size
    return buf.getvalue()


def labels_json(labels: np.ndarray, classes: list[str], with_labels: bool = True) -> dict[str, Any]:
    """The JSON response: size, pixel count per class (every class, in order), the labels."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))
    out: dict[str, Any] = {
        "height": int(labels.shape[0]),
        "width": int(labels.shape[1]),
        "histogram": {name: int(counts[i]) for i, name in enumerate(classes)},
    }
    if with_labels:
        out["labels"] = labels.tolist()
    return out
