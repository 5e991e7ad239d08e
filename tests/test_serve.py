"""`ifa-rt serve` (ifa_rt.serve): payloads, arguments, and the real Ray Serve app on loopback.

The Ray test starts the one command in a subprocess (a local Ray with 2 CPUs, dashboard off,
127.0.0.1 only), sends real CamVid images from concurrent client threads as PNG and JPEG,
compares the labels with a direct Segmenter, checks that Ray formed batches, and stops it
with SIGINT (Serve and Ray shut down, exit code 0). It skips when Ray is not installed (the
optional extra `ifa-rt[serve]`).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _reliability import fixture_dir
from ifa_rt import Segmenter
from ifa_rt.cli import build_parser
from ifa_rt.serve.codec import decode_image, encode_png, labels_json

HAVE_RAY = all(importlib.util.find_spec(m) is not None for m in ("ray", "starlette"))
START_TIMEOUT = 45  # s: Ray + Serve + one replica on a loaded 2-core machine
REQUEST_TIMEOUT = 20


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


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
    ("body", "message"),
    [
        (b"", r"expected an encoded image \(PNG/JPEG\), got 0 bytes$"),
        (
            b"not an image",
            r"expected an encoded image \(PNG/JPEG\), got 12 bytes that do not decode "
            r"\(UnidentifiedImageError: cannot identify image file\)$",
        ),
    ],
)
def test_codec_rejects_bad_bodies(body, message):
    with pytest.raises(ValueError, match=r"^serve: request body: " + message):
        decode_image(body)


def test_cli_arguments():
    args = build_parser(["serve", "camvid"]).parse_args(["serve", "camvid"])
    assert (args.replicas, args.port, args.max_batch, args.max_delay_ms) == (1, 8000, 4, 10.0)
    argv = ["serve", "m.ifa.pt", "--replicas", "2", "--shapes", "360x480,64x96", "--port", "9"]
    args = build_parser(argv).parse_args(argv)
    assert args.replicas == 2 and args.shapes == [(360, 480), (64, 96)] and args.port == 9
    for bad in (["--replicas", "0"], ["--shapes", "360by480"], ["--max-batch", "-1"]):
        argv = ["serve", "camvid", *bad]
        with pytest.raises(SystemExit):
            build_parser(argv).parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ifa-rt serve` on a free loopback port; yields (url, artifact); stopped with SIGINT."""
    artifact = str(fixture_dir() / "tiny.ifa.pt")
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [sys.executable, "-m", "ifa_rt.cli", "serve", artifact, "--port", str(port)]
    cmd += ["--max-batch", "4", "--max-delay-ms", "50", "--shapes", "360x480", "--num-cpus", "2"]
    with open(log, "w") as out:
        # Own session: its Ray processes can be found (and, on failure, ended) as one group.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while "ifa-rt serve: " + artifact + " on " not in log.read_text():
            assert proc.poll() is None, f"serve exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"serve not up in {START_TIMEOUT} s"
            time.sleep(0.25)
        yield url, artifact, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


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

    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT) as r:
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
