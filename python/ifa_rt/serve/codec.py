"""HTTP payloads and request limits of `ifa-rt serve` (no Ray here, so they are testable alone).

Request body: one encoded image, PNG, JPEG, BMP or WebP only, decoded to RGB pixels as stored
(EXIF orientation is not applied). Its size is checked from the header before any pixel is
decoded, since a file of a few hundred KB can decode to gigabytes. Responses: a PNG of the
class indices with the artifact's palette attached (`format=png`, the default: viewers show
colours, and `np.array(Image.open(...))` gives the labels back), or JSON (`format=json`).
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import hmac
import io
import warnings
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "ACCEPTED_FORMATS",
    "FORMATS",
    "Limits",
    "RequestError",
    "body_too_large",
    "check_content_length",
    "check_token",
    "decode_image",
    "encode_png",
    "image_bytes",
    "labels_json",
]

FORMATS = ("png", "json")
# Pillow's names of the image formats a request may carry; everything else is a 415, so no
# other decoder (EPS through Ghostscript, TIFF's many codecs, ...) ever sees request bytes.
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may cost a replica; every limit gives a JSON error, never a stall."""

    # A 4K RGB frame is ~25 MB as PNG; anything much bigger is not one camera frame.
    max_body_bytes: int = 64 * 2**20
    # ~16.8 MP: 4K frames pass; the activations of larger inputs approach gigabytes.
    max_pixels: int = 4096 * 4096
    # Requests with a whole, valid body a replica holds at once (waiting for a batch,
    # running); more get 503. A request takes its slot only once its body is in and decoded,
    # so slow or idle clients never occupy one.
    max_queue: int = 32
    # Seconds of engine work (requests ahead × measured time per image) a new request may
    # find ahead of it; more get 503 at once, so admitted requests are answered in time.
    max_wait_s: float = 1.0
    # Seconds the whole body may take to arrive (408 after): a client sending one byte a
    # second cannot hold a connection and its buffer for long.
    body_timeout_s: float = 10.0
    # Bytes of request bodies still arriving that a replica buffers at once (503 beyond).
    max_buffered_bytes: int = 512 * 2**20
    # Requests per replica still sending their body: they hold no queue slot, only a
    # connection and their bytes so far (Ray's max_ongoing_requests is this + max_queue).
    max_reading: int = 512
    # Seconds an idle keep-alive connection stays open (the HTTP proxy's setting).
    keep_alive_s: int = 5
    # Bearer token every request must present (None: no authentication).
    token: str | None = None


class RequestError(ValueError):
    """A request the service refuses: carries its HTTP status and extra response headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def check_token(authorization: str | None, token: str | None) -> None:
    """Refuse (401) a request whose `Authorization: Bearer` header is not the token."""
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest's time does not depend on where the strings differ.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        raise RequestError(
            401,
            "serve: header 'Authorization': expected 'Bearer <token>' with the service's token, "
            + ("got none" if not authorization else "got a different value"),
            {"WWW-Authenticate": "Bearer"},
        )


def check_content_length(header: str | None, limit: int) -> None:
    """Refuse a declared body over `limit` bytes (413) before any of it is read."""
    if header is None:
        return  # chunked: the reader counts as it goes
    try:
        length = int(header)
    except ValueError:
        raise RequestError(
            400, f"serve: header 'Content-Length': expected an integer, got '{header[:40]}'"
        ) from None
    if length > limit:
        raise RequestError(
            413, f"serve: request body: expected at most {limit} bytes, got {length}"
        )


def body_too_large(limit: int, seen: int) -> RequestError:
    """The 413 for a chunked body that passed `limit` while being read."""
    return RequestError(
        413, f"serve: request body: expected at most {limit} bytes, got more than {seen - 1}"
    )


def decode_image(body: bytes, max_pixels: int = Limits.max_pixels) -> np.ndarray:
    """An encoded image -> uint8 H×W×3 RGB; RequestError (400, 413 or 415) saying what was wrong."""
    if not body:
        raise RequestError(
            400, "serve: request body: expected an encoded image (PNG/JPEG), got 0 bytes"
        )
    try:
        with warnings.catch_warnings():
            # Our own pixel limit (below) is the check; Pillow's bomb warning would only
            # turn sizes between the two limits into a confusing decode error.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(body), formats=ACCEPTED_FORMATS)  # header only
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"serve: request body: {_short(exc)}") from None
    except UnidentifiedImageError:
        raise _unaccepted(body) from None
    except Exception as exc:  # Pillow raises many types for broken headers
        raise _undecodable(body, exc) from None
    if image.width * image.height > max_pixels:
        raise RequestError(
            413,
            f"serve: request body: expected an image of at most {max_pixels} pixels, got "
            f"{image.width}x{image.height} ({image.width * image.height} pixels)",
        )
    try:
        return np.asarray(image.convert("RGB"))
    except Exception as exc:
        raise _undecodable(body, exc) from None


def _unaccepted(body: bytes) -> RequestError:
    """415 naming the format when Pillow knows it, else 400: the bytes are no image at all."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            name = Image.open(io.BytesIO(body)).format  # parses the header only, never decodes
    except Exception:
        name = None
    if name is None:
        return _undecodable(body, UnidentifiedImageError("not an image Pillow recognises"))
    return RequestError(
        415,
        f"serve: request body: expected an image in {', '.join(ACCEPTED_FORMATS)}, got {name}",
    )


def _undecodable(body: bytes, exc: Exception) -> RequestError:
    return RequestError(
        400,
        f"serve: request body: expected an encoded image (PNG/JPEG), got {len(body)} bytes "
        f"that do not decode ({type(exc).__name__}: {_short(exc)})",
    )


def _short(exc: Exception) -> str:
    """Pillow's message without the repr of our in-memory file."""
    return str(exc).replace(" <_io.BytesIO object", "").split(" at 0x")[0]


def image_bytes(body: bytes, content_type: str | None) -> bytes:
    """The encoded image of a request: the body itself, or the file part of a
    `multipart/form-data` body (the field `file` or `image`, else the one part with a file)."""
    if not (content_type or "").lower().startswith("multipart/form-data"):
        return body
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = list(message.iter_parts()) if message.is_multipart() else []
    named = {part.get_param("name", header="content-disposition"): part for part in parts}
    files = [part for part in parts if part.get_filename() is not None]
    chosen = named.get("file") or named.get("image") or (files[0] if len(files) == 1 else None)
    if chosen is None:
        raise RequestError(
            400,
            "serve: multipart body: expected one file field (curl -F file=@image.jpg), got "
            + (", ".join(repr(str(n)) for n in named) if named else "no parts")
            + "; or send the image itself as the body (curl --data-binary @image.jpg)",
        )
    return chosen.get_payload(decode=True) or b""


def encode_png(labels: np.ndarray, palette: list[list[int]] | None) -> bytes:
    """uint8 H×W class indices -> a PNG whose pixel values are the indices: with the palette
    attached (viewers show colours), or greyscale when `palette` is None."""
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    if palette is None:
        image = Image.fromarray(labels, mode="L")
    else:
        image = Image.fromarray(labels, mode="P")
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
