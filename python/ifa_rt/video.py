"""Segment a video file frame by frame and write the labels blended over it as a new video.

Decoding and encoding go through PyAV (`pip install ifa-rt[video]`, FFmpeg bundled in its
wheel), imported only here: the runtime itself never needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["VIDEO_SUFFIXES", "VideoReport", "is_video", "segment_video", "video_size"]

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")


def is_video(path: Path) -> bool:
    """Whether `path` names a video file (by suffix)."""
    return path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class VideoReport:
    """What one video run did: frames, per-frame model latency (ms), wall time, output path."""

    output: Path
    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    size: tuple[int, int] = (0, 0)

    def summary(self) -> str:
        """One line: frames, size, p50/p90/p99 model latency, end-to-end frames/s."""
        ms = np.asarray(self.latencies_ms)
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return (
            f"{self.frames} frames {self.size[0]}x{self.size[1]}: p50 {p50:.1f} ms, "
            f"p90 {p90:.1f} ms, p99 {p99:.1f} ms per frame; "
            f"{self.frames / self.wall_s:.2f} frames/s end to end (decode + segment + encode)"
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


def video_size(path: Path) -> tuple[int, int, int]:
    """(height, width, frame count or 1 if unknown) of the first video stream of `path`."""
    with _import_av().open(str(path)) as src:
        if not src.streams.video:
            raise ValueError(f"segment: '{path}': expected a video stream, found none")
        stream = src.streams.video[0]
        return stream.codec_context.height, stream.codec_context.width, stream.frames or 1


def segment_video(
    seg,
    source: Path,
    output: Path,
    *,
    alpha: float = 0.5,
    progress: bool = True,
    max_frames: int | None = None,
) -> VideoReport:
    """Segment every frame of `source` with `seg` and write the overlay video to `output`.

    The output keeps the source's frame rate and size (H.264, yuv420p; odd sizes are
    padded by one pixel, as the codec needs even sizes). Raises ValueError for a file
    with no video stream; an undecodable file raises PyAV's error with the path.
    """
    from tqdm import tqdm

    from .viz import overlay

    av = _import_av()
    report = VideoReport(output=output)
    start = time.perf_counter()
    with av.open(str(source)) as src:
        if not src.streams.video:
            raise ValueError(f"segment: '{source}': expected a video stream, found none")
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"  # decode on FFmpeg's threads, beside the model
        rate = stream.average_rate or stream.guessed_rate or 25
        total = stream.frames or None
        if max_frames is not None:
            total = min(total or max_frames, max_frames)
        output.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(output), mode="w") as dst:
            out_stream = None
            bar = tqdm(total=total, unit="frame", disable=not progress, desc=source.name)
            for frame in src.decode(stream):
                if max_frames is not None and report.frames >= max_frames:
                    break
                image = frame.to_ndarray(format="rgb24")
                t = time.perf_counter()
                labels = seg(image)
                report.latencies_ms.append((time.perf_counter() - t) * 1000.0)
                blended = overlay(image, labels, seg.palette, alpha)
                if out_stream is None:
                    h, w = image.shape[:2]
                    report.size = (h, w)
                    out_stream = dst.add_stream("libx264", rate=rate)
                    out_stream.height, out_stream.width = h + h % 2, w + w % 2
                    out_stream.pix_fmt = "yuv420p"
                    out_stream.options = {"crf": "20", "preset": "veryfast"}
                blended = np.pad(
                    blended,
                    (
                        (0, out_stream.height - blended.shape[0]),
                        (0, out_stream.width - blended.shape[1]),
                        (0, 0),
                    ),
                    mode="edge",
                )
                for packet in out_stream.encode(av.VideoFrame.from_ndarray(blended, "rgb24")):
                    dst.mux(packet)
                report.frames += 1
                bar.update(1)
                bar.set_postfix(ms=f"{report.latencies_ms[-1]:.1f}")
            bar.close()
            if out_stream is not None:
                for packet in out_stream.encode():  # flush the encoder's delayed frames
                    dst.mux(packet)
    report.wall_s = time.perf_counter() - start
    if report.frames == 0:
        output.unlink(missing_ok=True)
        raise ValueError(f"segment: '{source}': expected at least one decodable frame, got none")
    return report
