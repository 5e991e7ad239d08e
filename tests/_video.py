"""Helpers of the video tests: write real frames as a video whose decoded frames are exact."""

from __future__ import annotations

import numpy as np


def write_video(path, frames: list[np.ndarray], rate: int = 10) -> None:
    """Encode RGB frames losslessly (H.264, crf 0, 4:4:4); the container follows the suffix."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
