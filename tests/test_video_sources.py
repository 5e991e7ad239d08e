"""`ifa-rt segment` sources beyond files: a file:// URL and an HTTP stream on loopback (real
CamVid frames as MPEG-TS), glob patterns, label frames, and a missing webcam or refused
stream failing with a clear error before the engine is built. Nothing leaves this machine."""

from __future__ import annotations

import functools
import http.server
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from _video import write_video
from ifa_rt import Segmenter
from ifa_rt.cli import main
from ifa_rt.video import parse_source

av = pytest.importorskip("av", reason="PyAV (the [video] extra) is not installed")

EXACT = ["--precision", "fp32", "--runtime", "jit", "--threads", "2"]  # the reference's engine


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory, camvid_val_paths):
    """Five consecutive real CamVid frames (360x480) as a streamable MPEG-TS (lossless H.264),
    and the frames a decoder gets back from it."""
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in camvid_val_paths[:5]]
    path = tmp_path_factory.mktemp("stream") / "street.ts"
    write_video(path, frames)
    with av.open(str(path)) as src:
        decoded = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    assert len(decoded) == 5
    return path, decoded


@pytest.fixture(scope="module")
def reference():
    return Segmenter("camvid", precision="fp32", runtime="jit", shapes=[(360, 480)], threads=2)


@pytest.fixture
def http_url(stream_file):
    """The MPEG-TS served by a plain HTTP server on 127.0.0.1 (a loopback stream)."""
    handler = functools.partial(QuietHandler, directory=str(stream_file[0].parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{stream_file[0].name}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files without logging each request to stderr."""

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        """Drop the per-request log line."""


def _label_frames(folder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted(folder.iterdir())]


def test_http_stream_on_loopback_writes_exact_label_frames(
    http_url, stream_file, reference, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["segment", http_url, "-o", str(out), "--max-frames", "3", "--label-frames", *EXACT]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "street.ts: 3 frames 360x480: p50 " in text  # H×W, as the API says it
    frames = _label_frames(out / "street_labels")
    assert len(frames) == 3
    for labels, image in zip(frames, stream_file[1], strict=False):
        np.testing.assert_array_equal(labels, reference(image))  # PNG frames are lossless
    assert len(np.unique(frames[0])) >= 5  # a real street scene
    with av.open(str(out / "street_overlay.mp4")) as written:  # the overlay is still written
        assert sum(1 for _ in written.decode(video=0)) == 3


def test_file_url_with_no_overlay_writes_label_frames_only(stream_file, reference, tmp_path):
    url = stream_file[0].resolve().as_uri()  # file:///...
    assert url.startswith("file:///")
    assert main(["segment", url, "-o", str(tmp_path), "--no-overlay", *EXACT]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["street_labels"]
    frames = _label_frames(tmp_path / "street_labels")
    assert len(frames) == 5  # a file ends by itself
    np.testing.assert_array_equal(frames[-1], reference(stream_file[1][-1]))


def test_glob_pattern_segments_the_matching_real_frames(camvid_val_paths, tmp_path, capsys):
    folder = camvid_val_paths[0].parent
    pattern = str(folder / f"{camvid_val_paths[1].stem[:-1]}[{camvid_val_paths[1].stem[-1]}]*")
    pattern_two = str(folder / f"{camvid_val_paths[2].stem}.j?g")
    args = ["segment", pattern, pattern_two, "-o", str(tmp_path), "--no-overlay", *EXACT]
    assert main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{p.stem}_labels.png" for p in camvid_val_paths[1:3]
    )
    assert f"{camvid_val_paths[1].name}: 360x480 " in capsys.readouterr().out  # H×W
    empty = str(folder / "nothing-like-this-*.jpg")
    assert main(["segment", empty, "-o", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"ifa-rt segment: error: segment: 'inputs': expected the pattern '{empty}' to match "
        "image or video files, got 0 match(es) and none of them an image or video\n"
    )


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="webcams map to /dev/videoN here")
def test_missing_webcam_is_a_clear_error_before_the_engine(tmp_path, capsys):
    index = next(i for i in range(60, 100) if not os.path.exists(f"/dev/video{i}"))
    for name in (str(index), f"/dev/video{index}"):
        t0 = time.perf_counter()
        assert main(["segment", name, "-o", str(tmp_path)]) == 1
        assert time.perf_counter() - t0 < 5  # no engine was built
        assert capsys.readouterr().err == (
            f"ifa-rt segment: error: segment: webcam '/dev/video{index}': no such device (is a "
            "camera connected? `ls /dev/video*` lists the devices)\n"
        )


def test_refused_stream_names_the_url(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"rtsp://127.0.0.1:{port}/live"
    assert main(["segment", url, "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"ifa-rt segment: error: segment: stream '{url}': cannot open it: ")
    assert "Connection refused" in err


def test_sources_are_told_apart():
    cam = parse_source("0")
    assert cam.kind == "webcam" and cam.live and cam.stem in ("video0", "camera0")
    rtsp = parse_source("rtsp://cam.local:554/live/main?token=x")
    assert (rtsp.kind, rtsp.live, rtsp.stem) == ("stream", True, "main")
    web = parse_source("https://example.org/clips/drive.mp4")
    assert (web.kind, web.live, web.stem) == ("stream", False, "drive")
    assert parse_source("frames/*.png") is None and parse_source("clip.mp4") is None
