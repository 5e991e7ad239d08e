"""`ifa-rt serve` (ifa_rt.serve): payloads, arguments, and the real Ray Serve app on loopback.

The Ray test starts the one command in a subprocess (a local Ray with 2 CPUs, dashboard off,
127.0.0.1 only), sends real CamVid images from concurrent client threads as PNG and JPEG,
compares the labels with a direct Segmenter, checks that Ray formed batches, and stops it
with SIGINT (Serve and Ray shut down, exit code 0). It skips when Ray is not installed (the
optional extra `ifa-rt[serve]`).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _reliability import fixture_dir
from _serve import (
    HAVE_RAY,
    REQUEST_TIMEOUT,
    encoded,
    free_port,
    listening_sockets,
    request,
    running_server,
)
from ifa_rt import Segmenter
from ifa_rt.cli import build_parser
from ifa_rt.serve import exposure_warning
from ifa_rt.serve.codec import (
    RequestError,
    check_content_length,
    check_token,
    decode_image,
    encode_png,
    labels_json,
)


def test_codec_round_trip(real_image):
    image = real_image(0, (40, 56))
    np.testing.assert_array_equal(decode_image(encoded(image, "PNG")), image)
    jpeg = encoded(image, "JPEG")
    np.testing.assert_array_equal(decode_image(jpeg), np.asarray(Image.open(io.BytesIO(jpeg))))
    labels = (np.arange(40 * 56) % 3).astype(np.uint8).reshape(40, 56)
    png = Image.open(io.BytesIO(encode_png(labels, [[1, 2, 3], [4, 5, 6], [7, 8, 9]])))
    assert png.mode == "P" and png.getpalette()[:9] == list(range(1, 10))
    np.testing.assert_array_equal(np.array(png), labels)
    body = labels_json(labels, ["a", "b", "c", "d"])
    assert body["histogram"] == {"a": 747, "b": 747, "c": 746, "d": 0}
    assert (body["height"], body["width"]) == (40, 56) and body["labels"] == labels.tolist()
    assert "labels" not in labels_json(labels, ["a", "b", "c"], with_labels=False)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, r"expected an encoded image \(PNG/JPEG\), got 0 bytes$"),
        (
            b"not an image",
            400,
            r"expected an encoded image \(PNG/JPEG\), got 12 bytes that do not decode "
            r"\(UnidentifiedImageError: not an image Pillow recognises\)$",
        ),
        (
            encoded(np.zeros((4, 4, 3), np.uint8), "GIF"),
            415,
            r"expected an image in PNG, JPEG, BMP, WEBP, got GIF$",
        ),
        (
            encoded(np.zeros((4, 4, 3), np.uint8), "TIFF"),
            415,
            r"expected an image in PNG, JPEG, BMP, WEBP, got TIFF$",
        ),
        (
            encoded(np.zeros((40, 50, 3), np.uint8), "PNG")[:60],  # header, then cut off
            400,
            r"expected an encoded image \(PNG/JPEG\), got 60 bytes that do not decode \(",
        ),
    ],
)
def test_codec_rejects_bad_bodies(body, status, message):
    with pytest.raises(RequestError, match=r"^serve: request body: " + message) as info:
        decode_image(body)
    assert info.value.status == status


def test_pixel_limit_is_read_from_the_header_before_decoding():
    # 9000x9000 (81 MP, under Pillow's own bomb limit): ~240 KB of PNG, 243 MB of pixels.
    bomb = encoded(np.zeros((9000, 9000, 3), np.uint8), "PNG")
    assert len(bomb) < 400_000
    start = time.perf_counter()
    with pytest.raises(RequestError, match=r"at most 16777216 pixels, got 9000x9000 \(81000000"):
        decode_image(bomb)  # the default limit, 4096x4096
    assert time.perf_counter() - start < 0.5  # the header only: decoding takes seconds
    with pytest.raises(RequestError, match=r"at most 1999 pixels, got 40x50 \(2000 pixels\)$"):
        decode_image(encoded(np.zeros((50, 40, 3), np.uint8), "BMP"), max_pixels=1999)
    assert decode_image(encoded(np.zeros((50, 40, 3), np.uint8), "WEBP"), 2000).shape == (50, 40, 3)


def test_token_and_content_length_checks():
    check_token(None, None)  # no token configured: anything goes
    check_token("Bearer s3cret", "s3cret")
    for header, got in [
        (None, "got none"),
        ("Bearer nope", "got a different value"),
        ("Basic s3cret", "got a different value"),
    ]:
        with pytest.raises(RequestError, match=got) as info:
            check_token(header, "s3cret")
        assert info.value.status == 401 and info.value.headers == {"WWW-Authenticate": "Bearer"}
    check_content_length(None, 10)
    check_content_length("10", 10)
    with pytest.raises(RequestError, match=r"expected at most 10 bytes, got 11$") as info:
        check_content_length("11", 10)
    assert info.value.status == 413
    with pytest.raises(RequestError, match=r"'Content-Length': expected an integer, got 'x'$"):
        check_content_length("x", 10)


def test_exposure_warning():
    assert exposure_warning("127.0.0.1", None) is None
    assert exposure_warning("::1", None) is None and exposure_warning("localhost", None) is None
    assert "set IFA_RT_SERVE_TOKEN" in exposure_warning("0.0.0.0", None)
    assert "must carry the bearer token" in exposure_warning("10.1.2.3", "t")
    assert "not loopback" in exposure_warning("myhost.example", None)


def test_cli_arguments():
    args = build_parser(["serve", "camvid"]).parse_args(["serve", "camvid"])
    assert (args.replicas, args.port, args.max_batch, args.max_delay_ms) == (1, 8000, 4, 10.0)
    argv = ["serve", "m.ifa.pt", "--replicas", "2", "--shapes", "360x480,64x96", "--port", "9"]
    args = build_parser(argv).parse_args(argv)
    assert args.replicas == 2 and args.shapes == [(360, 480), (64, 96)] and args.port == 9
    assert (args.max_body_mb, args.max_pixels, args.max_queue, args.token) == (
        64,
        4096**2,
        32,
        None,
    )
    argv = ["serve", "camvid", "--max-pixels", "1000", "--max-queue", "2", "--max-body-mb", "0.5"]
    args = build_parser(argv).parse_args(argv)
    assert (args.max_pixels, args.max_queue, args.max_body_mb) == (1000, 2, 0.5)
    bad_args = (
        ["--replicas", "0"],
        ["--shapes", "360by480"],
        ["--max-batch", "-1"],
        ["--max-pixels", "0"],
        ["--max-queue", "-3"],
    )
    for bad in bad_args:
        argv = ["serve", "camvid", *bad]
        with pytest.raises(SystemExit):
            build_parser(argv).parse_args(argv)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ifa-rt serve` of the fixture artifact on loopback; yields (url, artifact, proc, log)."""
    artifact = str(fixture_dir() / "tiny.ifa.pt")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    args = ["--max-batch", "4", "--max-delay-ms", "50", "--shapes", "360x480", "--num-cpus", "2"]
    with running_server(log, artifact, args) as (url, proc):
        yield url, artifact, proc, log


def post(url: str, body: bytes) -> tuple[int, bytes]:
    status, _, reply = request(url, body)
    return status, reply


@pytest.mark.skipif(not HAVE_RAY, reason="Ray Serve is not installed (pip install 'ifa-rt[serve]')")
@pytest.mark.slow
def test_every_listening_socket_is_on_loopback(server):
    """`--host 127.0.0.1` (the default): Ray's GCS, raylet, agents and workers listen on
    loopback too, not on the machine's other interfaces."""
    url, _, proc, _ = server
    sockets = listening_sockets(proc.pid)  # the command runs in its own session
    names = {name for _, _, name in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # Ray's processes were found
    assert ("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))) in {s[:2] for s in sockets}
    exposed = [s for s in sockets if not ipaddress.ip_address(s[0]).is_loopback]
    exposed = [s for s in exposed if not _mapped_loopback(s[0])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def _mapped_loopback(address: str) -> bool:
    mapped = ipaddress.ip_address(address)
    return isinstance(mapped, ipaddress.IPv6Address) and bool(
        mapped.ipv4_mapped and mapped.ipv4_mapped.is_loopback
    )


@pytest.mark.skipif(not HAVE_RAY, reason="Ray Serve is not installed (pip install 'ifa-rt[serve]')")
@pytest.mark.slow
def test_standard_endpoints_multipart_and_kserve_v2(server, real_image):
    """Runs before the main test below, which stops the server."""
    import requests
    import tritonclient.http as triton
    from prometheus_client.parser import text_string_to_metric_families

    url, artifact, _, _ = server
    seg = Segmenter(artifact)
    image = real_image(2, (360, 480))
    expected = seg(image)
    png = encoded(image, "PNG")

    status, headers, page = request(url)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'"model": "tiny-fixture"' in page and b"ifaResults" in page
    assert request(url + "health")[0] == 200
    status, _, ready = request(url + "ready")
    assert status == 200 and json.loads(ready)["ready"] is True

    # curl -F file=@frame.png: a multipart upload gives the same labels as a raw body.
    reply = requests.post(url, files={"file": ("frame.png", png, "image/png")}, timeout=20)
    assert reply.status_code == 200, reply.text[:300]
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(reply.content))), expected)
    assert reply.headers["x-ifa-engine"] == seg.stats()["engine"]
    assert reply.headers["server-timing"].startswith("app;dur=")
    status, _, grey = request(url + "?palette=0", png)
    assert status == 200 and Image.open(io.BytesIO(grey)).mode == "L"
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(grey))), expected)

    # The Open Inference Protocol through Triton's own HTTP client.
    client = triton.InferenceServerClient(url.removeprefix("http://").rstrip("/"))
    assert client.is_server_live() and client.is_model_ready("tiny-fixture")
    assert client.get_model_metadata("tiny-fixture")["outputs"][0]["name"] == "labels"
    for binary in (True, False):
        tensor = triton.InferInput("image", list(image.shape), "UINT8")
        tensor.set_data_from_numpy(image, binary_data=binary)
        wanted = triton.InferRequestedOutput("labels", binary_data=binary)
        result = client.infer("tiny-fixture", [tensor], outputs=[wanted])
        np.testing.assert_array_equal(result.as_numpy("labels"), expected)
    with pytest.raises(triton.InferenceServerException, match="one model, 'tiny-fixture'"):
        client.infer("other", [tensor])

    status, headers, text = request(url + "metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    answered = {
        s.labels["endpoint"]: s.value
        for s in families["ifa_rt_requests"].samples
        if s.name.endswith("_total") and s.labels["code"] == "200"
    }
    assert answered["segment"] >= 2 and answered["v2_infer"] == 2, answered
    refused = [s for s in families["ifa_rt_rejections"].samples if s.name.endswith("_total")]
    assert [s.labels["reason"] for s in refused] == ["bad_request"]  # the unknown model
    engine = families["ifa_rt_engine_info"].samples[0].labels
    assert f"{engine['runtime']} {engine['precision']}" == seg.stats()["engine"]


@pytest.mark.skipif(not HAVE_RAY, reason="Ray Serve is not installed (pip install 'ifa-rt[serve]')")
@pytest.mark.slow
def test_ray_serve_endpoint(server, camvid_val_paths):
    url, artifact, proc, log = server
    seg = Segmenter(artifact)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in camvid_val_paths[:6]]
    bodies = [encoded(im, "PNG") for im in images]
    # JPEG: the server decodes with the same Pillow as this process, so pixels match exactly.
    jpeg = (camvid_val_paths[0]).read_bytes()
    jpeg_pixels = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))

    def call(i: int) -> tuple[int, np.ndarray]:
        k = i % len(images)
        status, body = post(url, bodies[k])
        assert status == 200, body[:300]
        return k, np.array(Image.open(io.BytesIO(body)))

    with ThreadPoolExecutor(8) as pool:  # 8 concurrent clients, 24 requests: bounded
        results = list(pool.map(call, range(24)))
    for k, labels in results:
        np.testing.assert_array_equal(labels, seg(images[k]))

    status, body = post(url, jpeg)
    assert status == 200
    np.testing.assert_array_equal(np.array(Image.open(io.BytesIO(body))), seg(jpeg_pixels))

    status, body = post(url + "?format=json", bodies[1])
    assert status == 200
    reply = json.loads(body)
    assert np.array_equal(np.array(reply["labels"], np.uint8), seg(images[1]))
    assert sum(reply["histogram"].values()) == 360 * 480
    assert list(reply["histogram"]) == seg.classes

    status, body = post(url, b"not an image")
    assert status == 400 and b"do not decode" in body
    status, body = post(url + "?format=xml", bodies[0])
    assert status == 400 and b"expected one of png, json, got 'xml'" in body
    tiny = encoded(images[0][:8, :8], "PNG")  # below the artifact's min_size: the engine says so
    status, body = post(url, tiny)
    assert status == 400 and b"expected height and width >= 16" in body

    with urllib.request.urlopen(url + "stats", timeout=REQUEST_TIMEOUT) as r:
        info = json.loads(r.read())
    assert info["classes"] == seg.classes
    assert max(k for k, n in enumerate(info["batch_sizes"]) if n) >= 2, info  # Ray batched
    assert info["engine"]["fallback_calls"] == 0  # the 8x8 image was rejected, not run

    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    text = log.read_text()
    assert "ifa-rt serve: stopped" in text
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # Ray's processes ended with it
        os.killpg(proc.pid, 0)


def test_serve_without_ray_says_how_to_install(monkeypatch, capsys):
    # Simulate a missing Ray: the command fails with the install hint, exit code 2.
    import ifa_rt.serve as serve_module

    def missing():
        raise RuntimeError("serve: Ray Serve is not installed; pip install 'ifa-rt[serve]'")

    monkeypatch.setattr(serve_module, "_import_ray", missing)
    from ifa_rt.cli import main

    assert main(["serve", str(fixture_dir() / "tiny.ifa.pt"), "--port", str(free_port())]) == 1
    assert "pip install 'ifa-rt[serve]'" in capsys.readouterr().err


def test_unknown_model_fails_before_ray(capsys):
    from ifa_rt.cli import main

    assert main(["serve", str(Path("/nonexistent/model.ifa.pt"))]) == 1
    assert "expected an existing artifact file" in capsys.readouterr().err
