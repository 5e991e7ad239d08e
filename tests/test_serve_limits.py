"""`ifa-rt serve` as a hostile client meets it: every limit on the real command, on loopback.

One server (a local Ray with 2 CPUs) serves `raises.ifa.pt`, a graph that works for images up
to 40 rows and raises inside the engine for taller ones, with small limits and a bearer token
from the environment. Each refusal must be a JSON error with its status, arrive quickly (never
after reading an oversized body or decoding an oversized image), and leave the service
answering good requests.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import pytest

from _reliability import fixture_dir
from _serve import HAVE_RAY, REQUEST_TIMEOUT, encoded, request, running_server

pytestmark = [
    pytest.mark.skipif(
        not HAVE_RAY, reason="Ray Serve is not installed (pip install 'ifa-rt[serve]')"
    ),
    pytest.mark.slow,
]

TOKEN = "test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 2**20  # --max-body-mb 1
MAX_PIXELS = 100_000
GOOD = np.random.default_rng(0).integers(0, 255, (32, 48, 3), np.uint8)
BODY_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    """The limited server's URL (a raising artifact, token from the environment)."""
    artifact = str(fixture_dir() / "bad" / "raises.ifa.pt")
    log = tmp_path_factory.mktemp("serve_limits") / "serve.log"
    args = ["--max-batch", "4", "--max-delay-ms", "300", "--num-cpus", "2", "--threads", "1"]
    args += ["--max-body-mb", "1", "--max-pixels", str(MAX_PIXELS), "--max-queue", "2"]
    args += ["--body-timeout-s", str(BODY_TIMEOUT_S)]
    with running_server(log, artifact, args, env={"IFA_RT_SERVE_TOKEN": TOKEN}) as (url, _):
        yield url


def error_of(status: int, body: bytes) -> str:
    """The JSON error message of a refusal (every refusal is JSON)."""
    reply = json.loads(body)
    assert list(reply) == ["error"], reply
    return reply["error"]


def assert_still_serves(url: str) -> None:
    status, headers, body = request(url, encoded(GOOD, "PNG"), AUTH)
    assert status == 200 and headers["content-type"] == "image/png", body[:300]


def test_token_is_required(url):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, reply_headers, body = request(url, encoded(GOOD, "PNG"), headers)
        assert status == 401 and reply_headers["www-authenticate"] == "Bearer"
        assert error_of(status, body).startswith("serve: header 'Authorization': expected")
    for path in ("stats", "metrics", "v2"):  # reads are protected too
        status, _, body = request(url + path)
        assert status == 401, path
    status, _, body = request(url + "stats", headers=AUTH)
    assert status == 200 and json.loads(body)["limits"]["token"] is True
    for path in ("", "health", "ready", "v2/health/live"):  # no data: no token needed
        status, _, body = request(url + path)
        assert status == 200, (path, body[:200])
    assert_still_serves(url)


def raw_post(url: str, headers: dict[str, str], body) -> tuple[int, bytes, float]:
    """POST with http.client (full control of the headers); (status, body, seconds)."""
    parts = urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
    start = time.perf_counter()
    try:
        conn.putrequest("POST", "/")
        for key, value in {**AUTH, **headers}.items():
            conn.putheader(key, value)
        conn.endheaders()
        try:
            for chunk in body:
                conn.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent: fine
        response = conn.getresponse()
        return response.status, response.read(), time.perf_counter() - start
    finally:
        conn.close()


def test_declared_oversized_body_is_refused_before_reading_it(url):
    # Content-Length says 64 MiB and no byte of the body follows: a server that read the body
    # first would wait for it until the client timed out.
    status, body, seconds = raw_post(url, {"Content-Length": str(64 * 2**20)}, [])
    assert status == 413 and seconds < 5
    assert error_of(status, body) == (
        f"serve: request body: expected at most {MAX_BODY} bytes, got {64 * 2**20}"
    )
    assert_still_serves(url)


def test_chunked_oversized_body_is_cut_off(url):
    chunk = b"\0" * (256 * 2**10)

    def chunked(n):  # transfer-encoding: chunked, no Content-Length
        for _ in range(n):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"

    status, body, _ = raw_post(url, {"Transfer-Encoding": "chunked"}, chunked(8))  # 2 MiB
    assert status == 413
    assert error_of(status, body).startswith(
        f"serve: request body: expected at most {MAX_BODY} bytes, got more than"
    )
    assert_still_serves(url)


def test_oversized_image_is_refused_from_its_header(url):
    big = encoded(np.zeros((1000, 1000, 3), np.uint8), "PNG")  # 1 MP in ~3 KB
    start = time.perf_counter()
    status, _, body = request(url, big, AUTH)
    assert status == 413 and time.perf_counter() - start < 5
    assert error_of(status, body) == (
        f"serve: request body: expected an image of at most {MAX_PIXELS} pixels, "
        "got 1000x1000 (1000000 pixels)"
    )
    assert_still_serves(url)


def test_unaccepted_format_is_415(url):
    status, _, body = request(url, encoded(GOOD, "GIF"), AUTH)
    assert status == 415
    assert error_of(status, body).endswith("expected an image in PNG, JPEG, BMP, WEBP, got GIF")
    for fmt in ("JPEG", "BMP", "WEBP"):
        status, _, body = request(url, encoded(GOOD, fmt), AUTH)
        assert status == 200, (fmt, body[:200])


def test_engine_failure_is_a_json_500(url):
    tall = np.zeros((48, 48, 3), np.uint8)  # the graph raises for more than 40 rows
    status, headers, body = request(url, encoded(tall, "PNG"), AUTH)
    assert status == 500
    message = error_of(status, body)
    # The client learns a request id, not the engine's internals (those go to the log).
    request_id = headers["x-request-id"]
    assert message == (
        f"serve: the request failed (request id {request_id}; details in the server log)"
    )
    assert "boom" not in message and "RuntimeError" not in message
    assert_still_serves(url)


def test_slow_clients_hold_no_queue_slot_and_are_cut_off(url):
    """Clients that announce a body and trickle it must neither take the queue (--max-queue 2)
    from good requests nor hold their connection past --body-timeout-s."""
    parsed = urlparse(url)
    head = (
        f"POST / HTTP/1.1\r\nHost: {parsed.hostname}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: image/png\r\nContent-Length: 200000\r\n\r\n"
    ).encode()
    stop = threading.Event()
    replies: list[bytes] = []

    def trickle() -> None:
        with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
            sock.sendall(head)
            sock.settimeout(0.2)
            reply = b""
            while not stop.is_set() and not reply:
                try:
                    sock.sendall(b"\x00")
                    reply = sock.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
            sock.settimeout(5)
            while reply:  # the rest of the reply, until the server closes the connection
                try:
                    more = sock.recv(4096)
                except OSError:
                    break
                if not more:
                    break
                reply += more
            replies.append(reply)

    slow = [threading.Thread(target=trickle) for _ in range(6)]
    start = time.monotonic()
    for t in slow:
        t.start()
    try:
        time.sleep(0.5)  # every slow client is mid-body now
        for _ in range(3):
            assert_still_serves(url)
        assert time.monotonic() - start < BODY_TIMEOUT_S  # served while they trickled
    finally:
        for t in slow:
            t.join(timeout=BODY_TIMEOUT_S + 20)
        stop.set()
    assert len(replies) == 6
    for reply in replies:
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert b"expected the whole body within 3 s" in reply
    assert time.monotonic() - start < BODY_TIMEOUT_S + 10
    status, _, info = request(url + "stats", headers=AUTH)
    counters = json.loads(info)
    assert counters["refused"]["too_slow"] >= 6 and counters["in_progress"] == 0


def test_overload_is_503_with_retry_after(url):
    # --max-queue 2 and a 300 ms batch window: of 8 requests sent at once, at most 2 are held;
    # the rest must be refused at once rather than queued without bound.
    barrier = threading.Barrier(8)
    body = encoded(GOOD, "PNG")

    def call(_):
        barrier.wait()
        return request(url, body, AUTH)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(8)))
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1, statuses
    busy = [(headers, body) for status, headers, body in results if status == 503]
    assert len(busy) >= 8 - 2 - 2, statuses  # 2 held; allow 2 that came after a batch finished
    for headers, reply in busy:
        assert headers["retry-after"] == "1"
        assert error_of(503, reply).startswith("serve: replica busy: expected fewer than 2")
    status, _, info = request(url + "stats", headers=AUTH)
    counters = json.loads(info)
    assert counters["refused"]["busy"] >= len(busy) and counters["in_progress"] == 0
    assert_still_serves(url)
