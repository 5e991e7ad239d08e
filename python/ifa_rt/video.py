"""Segment a video frame by frame: files, stream URLs and webcams in; an overlay video and/or
label frames out.

Sources (`parse_source`), all read through PyAV (`pip install ifa-rt[video]`, FFmpeg bundled
in its wheel), imported only here: the runtime itself never needs it.
- a video file (.mp4, .mov, .mkv, .avi, .webm, .m4v, .ts);
- a stream URL: any `scheme://` FFmpeg reads (rtsp://, rtmp://, http(s)://, udp://, srt://,
  file://, ...); opening and each read give up after `STREAM_TIMEOUT_S` seconds;
- a webcam: `0`, `1`, ... or `/dev/videoN` (Video4Linux2 on Linux; on macOS an index opens
  AVFoundation's camera N). Webcams and network streams have no end: `max_frames` or Ctrl-C
  stops them, and what was written until then is kept.
Outputs: the labels blended over every frame as an H.264 video (`overlay`), and/or each frame's
labels as a palettised PNG (pixel values are the class ids; the palette only colours them for
viewers) `labels_dir/000000.png`, `000001.png`, ... (lossless, unlike a video codec, so the ids
survive; numbered from 0 in decoding order).
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "STREAM_TIMEOUT_S",
    "VIDEO_SUFFIXES",
    "VideoReport",
    "VideoSource",
    "is_video",
    "label_png",
    "parse_source",
    "segment_video",
    "video_size",
]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".ts")
STREAM_TIMEOUT_S = 10.0
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WEBCAM = re.compile(r"^(?:\d+|/dev/video\d+)$")
# Network protocols that usually carry live streams (no frame count, no end).
_LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "rtp", "srt", "tcp")


def is_video(path: Path) -> bool:
    """Whether `path` names a video file (by suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoSource:
    """Something FFmpeg opens as video: a file, a stream URL or a webcam."""

    url: str  # what FFmpeg opens
    name: str  # how logs name it; output files are named after its stem
    format: str | None = None  # FFmpeg's input format when the URL does not say (webcams)
    live: bool = False  # no end of its own
    kind: str = "file"  # "file", "stream" or "webcam"

    @property
    def stem(self) -> str:
        """A file-name-safe stem for this source's outputs."""
        named = Path(self.name)
        stem = named.stem if self.kind == "file" or is_video(named) else self.name
        return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("_.") or self.kind

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> VideoSource:
        """A video file."""
        return cls(url=os.fspath(path), name=Path(path).name)

    def open(self):
        """The PyAV input container; OSError / ValueError that name the source."""
        av = _import_av()
        if self.kind == "webcam" and self.format == "v4l2" and not os.path.exists(self.url):
            raise FileNotFoundError(
                f"segment: webcam '{self.url}': no such device (is a camera connected? "
                "`ls /dev/video*` lists the devices)"
            )
        options = {}
        if self.kind == "stream":
            options["timeout"] = STREAM_TIMEOUT_S
        try:
            return av.open(self.url, format=self.format, **options)
        except av.FFmpegError as exc:
            # Keep the error's type (OSError for I/O, ValueError for data) with the source.
            kind = OSError if isinstance(exc, OSError) else ValueError
            raise kind(f"segment: {self.kind} '{self.url}': cannot open it: {exc}") from None


def parse_source(item: str) -> VideoSource | None:
    """A stream URL or webcam named on the command line as a source; None for anything else
    (a file, folder or glob pattern, for the caller to resolve)."""
    if _WEBCAM.match(item):
        index = item.removeprefix("/dev/video")
        if sys.platform == "darwin" and item.isdigit():
            return VideoSource(item, f"camera{index}", "avfoundation", True, "webcam")
        return VideoSource(f"/dev/video{index}", f"video{index}", "v4l2", True, "webcam")
    if _URL.match(item):
        scheme = item.split("://", 1)[0].lower()
        if scheme == "file":
            path = item[len("file://") :]
            return VideoSource(item, Path(path).name or "file", kind="stream")
        rest = item.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        name = rest.rsplit("/", 1)[-1] if "/" in rest else rest
        return VideoSource(item, name or scheme, live=scheme in _LIVE_SCHEMES, kind="stream")
    return None


def label_png(labels: np.ndarray, palette: list[list[int]]):
    """Class indices as a palettised PNG (PIL image): pixel values stay the class ids, viewers
    show the palette's colours."""
    from PIL import Image

    png = Image.fromarray(labels, mode="P")
    png.putpalette([v for rgb in palette for v in rgb])
    return png


@dataclass
class VideoReport:
    """What one video run did: frames, per-frame model latency (ms), wall time, outputs."""

    output: Path | None  # the overlay video, else the label frames' folder
    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    size: tuple[int, int] = (0, 0)  # (height, width)
    outputs: list[Path] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C (a live source)

    def summary(self) -> str:
        """One line: frames, H×W size, p50/p90/p99 model latency, end-to-end frames/s."""
        from .bench import percentile

        p50, p90, p99 = (percentile(self.latencies_ms, q) for q in (0.5, 0.9, 0.99))
        stopped = " (stopped by Ctrl-C)" if self.interrupted else ""
        return (
            f"{self.frames} frames {self.size[0]}x{self.size[1]}{stopped}: p50 {p50:.1f} ms, "
            f"p90 {p90:.1f} ms, p99 {p99:.1f} ms per frame; "
            f"{self.frames / self.wall_s:.2f} frames/s end to end (decode + segment + write)"
        )


def _import_av():
    """PyAV, or an ImportError that says how to get it."""
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            "segment: video needs PyAV; install it with `pip install 'ifa-rt[video]'` "
            "(or `pip install av`)"
        ) from exc
    return av


def _as_source(source: VideoSource | str | os.PathLike) -> VideoSource:
    if isinstance(source, VideoSource):
        return source
    return parse_source(os.fspath(source)) or VideoSource.from_path(source)


def video_size(source: VideoSource | str | os.PathLike) -> tuple[int, int, int]:
    """(height, width, frame count or 1 if unknown) of the first video stream of `source`."""
    source = _as_source(source)
    with source.open() as src:
        if not src.streams.video:
            raise ValueError(f"segment: '{source.url}': expected a video stream, found none")
        stream = src.streams.video[0]
        return stream.codec_context.height, stream.codec_context.width, stream.frames or 1


class _OverlayWriter:
    """The H.264 overlay video, opened at the first frame (its size is known then)."""

    def __init__(self, path: Path, rate) -> None:
        self.path, self.rate = path, rate
        self._container = self._stream = None

    def write(self, blended: np.ndarray) -> None:
        """Encode one RGB frame (odd sizes padded by one pixel: the codec needs even sizes)."""
        av = _import_av()
        if self._stream is None:
            h, w = blended.shape[:2]
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=self.rate)
            self._stream.height, self._stream.width = h + h % 2, w + w % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "20", "preset": "veryfast"}
        pad = (
            (0, self._stream.height - blended.shape[0]),
            (0, self._stream.width - blended.shape[1]),
            (0, 0),
        )
        frame = av.VideoFrame.from_ndarray(np.pad(blended, pad, mode="edge"), "rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder's delayed frames and close the file."""
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        if self._container is not None:
            self._container.close()


def segment_video(
    seg,
    source: VideoSource | str | os.PathLike,
    output: Path | None,
    *,
    labels_dir: Path | None = None,
    alpha: float = 0.5,
    progress: bool = True,
    max_frames: int | None = None,
) -> VideoReport:
    """Segment every frame of `source` with `seg`; write the overlay video to `output` (None:
    none) and each frame's labels as `labels_dir/NNNNNN.png` (None: none).

    The overlay keeps the source's frame rate and size (H.264, yuv420p; odd sizes are padded
    by one pixel). Raises ValueError for a source with no video stream or no decodable frame,
    and OSError naming a source that cannot be opened (missing webcam, refused connection).
    """
    from tqdm import tqdm

    from .viz import overlay

    if output is None and labels_dir is None:
        raise ValueError(
            "segment_video: expected an overlay path, a labels folder or both, got none"
        )
    source = _as_source(source)
    report = VideoReport(output=output if output is not None else labels_dir)
    start = time.perf_counter()
    with source.open() as src:
        if not src.streams.video:
            raise ValueError(f"segment: '{source.url}': expected a video stream, found none")
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"  # decode on FFmpeg's threads, beside the model
        rate = stream.average_rate or stream.guessed_rate or 25
        total = stream.frames or None
        if max_frames is not None:
            total = min(total or max_frames, max_frames)
        writer = None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            writer = _OverlayWriter(output, rate)
            report.outputs.append(output)
        if labels_dir is not None:
            labels_dir.mkdir(parents=True, exist_ok=True)
            report.outputs.append(labels_dir)
        bar = tqdm(total=total, unit="frame", disable=not progress, desc=source.name)
        try:
            for frame in src.decode(stream):
                if max_frames is not None and report.frames >= max_frames:
                    break
                image = frame.to_ndarray(format="rgb24")
                t = time.perf_counter()
                labels = seg(image)
                report.latencies_ms.append((time.perf_counter() - t) * 1000.0)
                report.size = image.shape[:2]
                if writer is not None:
                    writer.write(overlay(image, labels, seg.palette, alpha))
                if labels_dir is not None:
                    label_png(labels, seg.palette).save(labels_dir / f"{report.frames:06d}.png")
                report.frames += 1
                bar.update(1)
                bar.set_postfix(ms=f"{report.latencies_ms[-1]:.1f}")
        except KeyboardInterrupt:
            # A webcam or live stream has no end: Ctrl-C stops it and keeps what was written.
            report.interrupted = True
        finally:
            bar.close()
            if writer is not None:
                writer.close()
    report.wall_s = time.perf_counter() - start
    if report.frames == 0:
        if output is not None:
            output.unlink(missing_ok=True)
        raise ValueError(
            f"segment: '{source.url}': expected at least one decodable frame, got none"
        )
    return report
