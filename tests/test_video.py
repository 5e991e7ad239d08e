"""`ifa-rt segment VIDEO`: real CamVid frames encoded as a video, segmented, written back."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from _video import write_video
from ifa_rt.cli import main as cli_main

av = pytest.importorskip("av", reason="PyAV (the [video] extra) is not installed")


def _read_video(path) -> tuple[list[np.ndarray], float]:
    """All frames (RGB) and the frame rate of the first video stream."""
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in src.decode(stream)]
        return frames, float(stream.average_rate)


@pytest.fixture(scope="module")
def street_video(tmp_path_factory, camvid_val_paths):
    """Six consecutive real CamVid frames (360x480) as an .mp4, and the frames themselves."""
    frames = [np.asarray(Image.open(p).convert("RGB")) for p in camvid_val_paths[:6]]
    path = tmp_path_factory.mktemp("video") / "street.mp4"
    write_video(path, frames)
    return path, _read_video(path)[0]


def test_video_overlay_matches_the_runtimes_labels(street_video, tmp_path, capsys):
    """Every frame comes out, same size and rate, and shows the runtime's labels blended in."""
    from ifa_rt import Segmenter
    from ifa_rt.viz import overlay

    path, decoded = street_video
    assert cli_main(["segment", str(path), "-o", str(tmp_path), "--max-frames", "4"]) == 0
    summary = capsys.readouterr().out
    assert "street.mp4: 4 frames 360x480: p50" in summary and "frames/s end to end" in summary
    frames, rate = _read_video(tmp_path / "street_overlay.mp4")
    assert len(frames) == 4 and frames[0].shape == (360, 480, 3) and rate == 10
    seg = Segmenter("camvid", precision="fp32")
    for written, source in zip(frames, decoded[:4], strict=True):
        expected = overlay(source, seg(source), seg.palette).astype(np.int16)
        # H.264 at crf 20 in yuv420p is lossy: compare the mean, and that the labels show.
        assert np.abs(written.astype(np.int16) - expected).mean() < 6.0
        assert np.abs(written.astype(np.int16) - source).mean() > 10.0


def test_video_and_images_in_one_run(street_video, tmp_path, camvid_val_paths):
    """A video beside an image: both are written, the image as before; --no-overlay writes
    labels only: the image's label PNG and the video's label frames, no overlay video."""
    path, _ = street_video
    args = [
        "segment",
        str(path),
        str(camvid_val_paths[0]),
        "-o",
        str(tmp_path),
        "--max-frames",
        "2",
        "--no-overlay",
    ]
    assert cli_main(args) == 0
    assert (tmp_path / f"{camvid_val_paths[0].stem}_labels.png").is_file()
    assert not (tmp_path / f"{camvid_val_paths[0].stem}_overlay.png").exists()
    assert not (tmp_path / "street_overlay.mp4").exists()
    frames = sorted((tmp_path / "street_labels").iterdir())
    assert [f.name for f in frames] == ["000000.png", "000001.png"]


def test_not_a_video_is_a_clear_error(tmp_path, capsys):
    """A file named .mp4 that holds no video fails with exit 1 and its name, no traceback."""
    fake = tmp_path / "broken.mp4"
    fake.write_bytes(b"this is not a video " * 100)
    assert cli_main(["segment", str(fake), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ifa-rt segment: error: ") and "broken.mp4" in err


def test_missing_pyav_says_how_to_install(monkeypatch, tmp_path, street_video, capsys):
    """Without PyAV the command names the extra to install instead of an ImportError trace."""
    monkeypatch.setitem(sys.modules, "av", None)
    assert cli_main(["segment", str(street_video[0]), "-o", str(tmp_path)]) == 1
    assert "pip install 'ifa-rt[video]'" in capsys.readouterr().err
