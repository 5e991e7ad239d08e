"""The Open Inference Protocol (KServe v2, spoken by Triton and KServe) for one image -> labels.

    GET  /v2/health/live, /v2/health/ready     200 when the replica answers
    GET  /v2/models/NAME, /v2/models/NAME/ready the model's metadata / readiness
    POST /v2/models/NAME/infer                 one input, one output:

input  "image": UINT8 [H, W, 3] or [1, H, W, 3] RGB pixels, or BYTES [1] holding one encoded
       image (PNG, JPEG, BMP, WebP); as JSON `data` or through the binary-data extension
       (`Inference-Header-Content-Length`, as `tritonclient.http` sends it).
output "labels": UINT8 [H, W] (or [1, H, W] for a 4-D input) class indices; binary when the
       request asks for it (`binary_data` on the output or `binary_data_output`), else JSON.

One image per request: the service batches concurrent requests itself.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import numpy as np

from .codec import RequestError, decode_image

__all__ = ["HEADER_LENGTH", "InferRequest", "model_metadata", "parse_infer", "infer_response"]

HEADER_LENGTH = "inference-header-content-length"
INPUT_NAME = "image"
OUTPUT_NAME = "labels"


@dataclasses.dataclass
class InferRequest:
    """A parsed infer request: the RGB image, its id, and how the labels go back."""

    image: np.ndarray
    request_id: str | None
    batched: bool  # the input had a leading batch dimension of 1
    binary: bool


def model_metadata(name: str) -> dict[str, Any]:
    """`GET /v2/models/NAME`: the model's one input and one output."""
    return {
        "name": name,
        "versions": ["1"],
        "platform": "ifa_rt",
        "inputs": [{"name": INPUT_NAME, "datatype": "UINT8", "shape": [-1, -1, 3]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "UINT8", "shape": [-1, -1]}],
    }


def parse_infer(body: bytes, header_length: str | None, max_pixels: int) -> InferRequest:
    """An infer request body -> InferRequest; RequestError (400/413) saying what was wrong."""
    json_bytes, binary = _split(body, header_length)
    try:
        head = json.loads(json_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"body: expected a JSON inference request, got invalid JSON ({exc})") from None
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list):
        raise _bad("body: expected a JSON object with an 'inputs' list")
    inputs = head["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise _bad(f"'inputs': expected one input '{INPUT_NAME}', got {len(inputs)}")
    spec = inputs[0]
    if spec.get("name") != INPUT_NAME:
        raise _bad(f"input name: expected '{INPUT_NAME}', got '{spec.get('name')}'")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(binary):
            raise _bad(
                f"input '{INPUT_NAME}': expected {size} bytes of binary data, got {len(binary)}"
            )
    elif binary:
        raise _bad(f"input '{INPUT_NAME}': binary data follows but 'binary_data_size' is not set")
    image, batched = _image(spec, binary if size is not None else None, max_pixels)
    request_id = head.get("id")
    return InferRequest(
        image, str(request_id) if request_id is not None else None, batched, _wants_binary(head)
    )


def infer_response(
    labels: np.ndarray, model: str, request: InferRequest
) -> tuple[bytes, dict[str, str]]:
    """The infer response body and its headers (binary-data extension when asked for)."""
    shape = [1, *labels.shape] if request.batched else list(labels.shape)
    output: dict[str, Any] = {"name": OUTPUT_NAME, "datatype": "UINT8", "shape": shape}
    labels = np.ascontiguousarray(labels, dtype=np.uint8)
    head: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": [output]}
    if request.request_id is not None:
        head["id"] = request.request_id
    if not request.binary:
        output["data"] = labels.ravel().tolist()
        return json.dumps(head).encode(), {"Content-Type": "application/json"}
    blob = labels.tobytes()
    output["parameters"] = {"binary_data_size": len(blob)}
    json_bytes = json.dumps(head).encode()
    return json_bytes + blob, {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(json_bytes)),
    }


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON part, binary part) of a body, split where the length header says."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        n = -1
    if not 0 <= n <= len(body):
        raise _bad(
            f"header 'Inference-Header-Content-Length': expected 0..{len(body)}, "
            f"got '{header_length[:40]}'"
        )
    return body[:n], body[n:]


def _image(spec: dict, binary: bytes | None, max_pixels: int) -> tuple[np.ndarray, bool]:
    """The RGB image an input carries, and whether it had a batch dimension."""
    datatype, shape = spec.get("datatype"), spec.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _bad(f"input '{INPUT_NAME}': expected 'shape' as a list of sizes, got {shape!r}")
    if datatype == "BYTES":
        if shape not in ([1], [1, 1]):
            raise _bad(f"input '{INPUT_NAME}': expected BYTES of shape [1], got {shape}")
        return decode_image(_one_bytes_element(spec, binary), max_pixels), False
    if datatype != "UINT8":
        raise _bad(f"input '{INPUT_NAME}': expected datatype UINT8 or BYTES, got '{datatype}'")
    batched = len(shape) == 4
    if batched and shape[0] != 1:
        raise _bad(
            f"input '{INPUT_NAME}': expected one image per request ([H, W, 3] or [1, H, W, 3]), "
            f"got a batch of {shape[0]}; send one request per image, the service batches them"
        )
    dims = shape[1:] if batched else shape
    if len(dims) != 3 or dims[2] != 3:
        raise _bad(f"input '{INPUT_NAME}': expected shape [H, W, 3] or [1, H, W, 3], got {shape}")
    height, width = dims[0], dims[1]
    if height * width > max_pixels:
        raise RequestError(
            413,
            f"serve: input '{INPUT_NAME}': expected an image of at most {max_pixels} pixels, "
            f"got {height}x{width} ({height * width} pixels)",
        )
    count = height * width * 3
    if binary is not None:
        if len(binary) != count:
            raise _bad(
                f"input '{INPUT_NAME}': shape {shape} needs {count} bytes, got {len(binary)}"
            )
        flat = np.frombuffer(binary, np.uint8)
    else:
        flat = _json_pixels(spec.get("data"), count, shape)
    return flat.reshape(height, width, 3), batched


def _json_pixels(data: Any, count: int, shape: list[int]) -> np.ndarray:
    """JSON `data` (flat or nested, row-major) -> `count` uint8 values, checked."""
    try:
        values = np.asarray(data, dtype=np.int64).ravel()
    except (TypeError, ValueError, OverflowError):
        raise _bad(f"input '{INPUT_NAME}': expected 'data' as integers 0..255") from None
    if values.size != count:
        raise _bad(f"input '{INPUT_NAME}': shape {shape} needs {count} values, got {values.size}")
    if values.size and (values.min() < 0 or values.max() > 255):
        raise _bad(f"input '{INPUT_NAME}': expected 'data' as integers 0..255")
    return values.astype(np.uint8)


def _one_bytes_element(spec: dict, binary: bytes | None) -> bytes:
    """The one element of a BYTES input, length-prefixed in the binary data."""
    if binary is not None:
        if len(binary) < 4 or struct.unpack_from("<I", binary)[0] != len(binary) - 4:
            raise _bad(f"input '{INPUT_NAME}': expected one length-prefixed BYTES element")
        return binary[4:]
    raise _bad(
        f"input '{INPUT_NAME}': expected BYTES through the binary-data extension "
        "(an encoded image is not JSON text); send UINT8 pixels as JSON 'data' instead"
    )


def _wants_binary(head: dict) -> bool:
    """Whether the request asks for the labels as binary data."""
    outputs = head.get("outputs") or []
    for out in outputs:
        name = out.get("name") if isinstance(out, dict) else out
        if name != OUTPUT_NAME:
            raise _bad(f"'outputs': expected only '{OUTPUT_NAME}', got '{name}'")
        return bool((out.get("parameters") or {}).get("binary_data", False))
    return bool((head.get("parameters") or {}).get("binary_data_output", False))


def _bad(message: str) -> RequestError:
    return RequestError(400, f"serve: v2 infer: {message}")
