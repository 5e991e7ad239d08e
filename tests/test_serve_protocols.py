"""The service's wire formats without Ray: KServe v2 bodies, multipart, the page, metrics."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pytest
import requests
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from _serve import encoded
from ifa_rt.serve.codec import RequestError, encode_png, image_bytes
from ifa_rt.serve.kserve import infer_response, model_metadata, parse_infer
from ifa_rt.serve.metrics import ReplicaMetrics
from ifa_rt.serve.page import render_page

MAX_PIXELS = 1_000_000


def v2_body(image: np.ndarray, binary: bool, **extra) -> tuple[bytes, str | None]:
    """An infer request for `image` as tritonclient.http would build it."""
    spec = {"name": "image", "shape": list(image.shape), "datatype": "UINT8"}
    head = {"id": "r1", "inputs": [spec], **extra}
    if not binary:
        spec["data"] = image.ravel().tolist()
        return json.dumps(head).encode(), None
    spec["parameters"] = {"binary_data_size": image.nbytes}
    text = json.dumps(head).encode()
    return text + image.tobytes(), str(len(text))


def test_v2_infer_round_trip_binary_and_json(real_image):
    image = real_image(0, (40, 56))
    for binary in (True, False):
        body, header = v2_body(image, binary)
        parsed = parse_infer(body, header, MAX_PIXELS)
        np.testing.assert_array_equal(parsed.image, image)
        assert parsed.request_id == "r1" and not parsed.batched and not parsed.binary
    batched, header = v2_body(
        image[None], True, outputs=[{"name": "labels", "parameters": {"binary_data": True}}]
    )
    parsed = parse_infer(batched, header, MAX_PIXELS)
    assert parsed.batched and parsed.binary
    labels = (np.arange(40 * 56) % 7).astype(np.uint8).reshape(40, 56)
    reply, headers = infer_response(labels, "camvid", parsed)
    n = int(headers["Inference-Header-Content-Length"])
    head = json.loads(reply[:n])
    assert head["outputs"][0]["shape"] == [1, 40, 56] and head["id"] == "r1"
    np.testing.assert_array_equal(np.frombuffer(reply[n:], np.uint8).reshape(40, 56), labels)
    parsed.binary = False
    reply, headers = infer_response(labels, "camvid", parsed)
    assert json.loads(reply)["outputs"][0]["data"] == labels.ravel().tolist()
    assert model_metadata("camvid")["inputs"][0]["shape"] == [-1, -1, 3]


def test_v2_bytes_input_carries_an_encoded_image(real_image):
    image = real_image(1, (32, 48))
    png = encoded(image, "PNG")
    head = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(png) + 4},
            }
        ]
    }
    text = json.dumps(head).encode()
    body = text + struct.pack("<I", len(png)) + png
    np.testing.assert_array_equal(parse_infer(body, str(len(text)), MAX_PIXELS).image, image)


def spec_body(**spec) -> bytes:
    return json.dumps({"inputs": [{"name": "image", **spec}]}).encode()


@pytest.mark.parametrize(
    ("body", "header", "status", "message"),
    [
        (b"{", None, 400, "expected a JSON inference request, got invalid JSON"),
        (b"[]", None, 400, "expected a JSON object with an 'inputs' list"),
        (json.dumps({"inputs": []}).encode(), None, 400, "expected one input 'image', got 0"),
        (
            spec_body(shape=[2, 2, 3], datatype="FP32", data=[0] * 12),
            None,
            400,
            "expected datatype UINT8 or BYTES, got 'FP32'",
        ),
        (
            spec_body(shape=[2, 2, 4], datatype="UINT8", data=[0] * 16),
            None,
            400,
            "expected shape [H, W, 3] or [1, H, W, 3], got [2, 2, 4]",
        ),
        (
            spec_body(shape=[2, 4, 4, 3], datatype="UINT8", data=[0] * 96),
            None,
            400,
            "expected one image per request ([H, W, 3] or [1, H, W, 3]), got a batch of 2",
        ),
        (
            spec_body(shape=[2, 2, 3], datatype="UINT8", data=[0] * 11),
            None,
            400,
            "shape [2, 2, 3] needs 12 values, got 11",
        ),
        (
            spec_body(shape=[2, 2, 3], datatype="UINT8", data=[256] * 12),
            None,
            400,
            "expected 'data' as integers 0..255",
        ),
        (
            spec_body(shape=[2000, 2000, 3], datatype="UINT8"),
            None,
            413,
            "expected an image of at most 1000000 pixels, got 2000x2000 (4000000 pixels)",
        ),
        (b"{}", "99", 400, "header 'Inference-Header-Content-Length': expected 0..2, got '99'"),
        (
            spec_body(shape=[1], datatype="BYTES", data=["x"]),
            None,
            400,
            "expected BYTES through the binary-data extension",
        ),
    ],
)
def test_v2_infer_refuses_bad_requests(body, header, status, message):
    with pytest.raises(RequestError) as err:
        parse_infer(body, header, MAX_PIXELS)
    assert err.value.status == status and message in str(err.value)
    assert str(err.value).startswith("serve: ")


def test_v2_binary_size_must_match_the_shape():
    spec = {"shape": [2, 2, 3], "datatype": "UINT8", "parameters": {"binary_data_size": 5}}
    text = spec_body(**spec)
    with pytest.raises(RequestError, match=r"shape \[2, 2, 3\] needs 12 bytes, got 5$"):
        parse_infer(text + b"12345", str(len(text)), MAX_PIXELS)


def test_multipart_upload_gives_the_file_part(real_image):
    png = encoded(real_image(0, (24, 32)), "PNG")
    for field in ("file", "image", "upload"):
        prepared = requests.Request(
            "POST", "http://x/", files={field: ("frame.png", png, "image/png")}, data={"note": "hi"}
        ).prepare()
        assert image_bytes(prepared.body, prepared.headers["Content-Type"]) == png
    assert image_bytes(png, "image/png") is png  # a raw body is the image itself
    no_file = requests.Request("POST", "http://x/", files={"note": (None, "hi")}).prepare()
    with pytest.raises(
        RequestError, match=r"expected one file field \(curl -F file=@image.jpg\), got 'note'"
    ):
        image_bytes(no_file.body, no_file.headers["Content-Type"])


def test_greyscale_png_values_are_the_classes():
    labels = (np.arange(30 * 20) % 11).astype(np.uint8).reshape(30, 20)
    grey = Image.open(io.BytesIO(encode_png(labels, None)))
    assert grey.mode == "L"
    np.testing.assert_array_equal(np.array(grey), labels)


def test_page_is_self_contained_and_carries_the_model():
    page = render_page("camvid", ["road", "</script><b>x"], [[1, 2, 3], [4, 5, 6]], token=True)
    assert "</script><b>" not in page  # a class name cannot end the script early
    start = page.index("const MODEL = ") + len("const MODEL = ")
    facts = json.loads(page[start : page.index(";\n", start)])
    assert facts == {
        "model": "camvid",
        "classes": ["road", "</script><b>x"],
        "palette": [[1, 2, 3], [4, 5, 6]],
        "token_required": True,
    }
    for external in ("http://", "https://", 'src="//', "@import"):
        assert external not in page, external  # no CDN, fonts or scripts from elsewhere


def test_metrics_are_valid_prometheus_text():
    metrics = ReplicaMetrics("camvid", max_batch=4)
    metrics.observe("segment", 200, 0.012)
    metrics.observe("segment", 200, 0.030)
    metrics.observe("page", 200, None)
    metrics.refused("busy")
    metrics.batch(3)
    metrics.render(2, "aoti int8")
    text = metrics.render(1, "aoti bf16").decode()  # the engine changed: one info series
    families = {f.name: f for f in text_string_to_metric_families(text)}
    requests_ = {
        (s.labels["endpoint"], s.labels["code"]): s.value
        for s in families["ifa_rt_requests"].samples
        if s.name.endswith("_total")
    }
    assert requests_ == {("segment", "200"): 2.0, ("page", "200"): 1.0}
    count = [s for s in families["ifa_rt_request_seconds"].samples if s.name.endswith("_count")]
    assert [s.value for s in count] == [2.0]
    engines = [s.labels for s in families["ifa_rt_engine_info"].samples]
    assert [(e["runtime"], e["precision"]) for e in engines] == [("aoti", "bf16")]
    assert [s.value for s in families["ifa_rt_queue_depth"].samples] == [1.0]
    busy = [s for s in families["ifa_rt_rejections"].samples if s.name.endswith("_total")]
    assert [(s.labels["reason"], s.value) for s in busy] == [("busy", 1.0)]
