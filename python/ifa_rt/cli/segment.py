"""`ifa-rt segment`: segment images, videos, streams and webcams with the C++ runtime; write
labels and overlays.

    ifa-rt segment INPUTS... -o OUT [--model camvid|PATH] [--device cpu]

INPUTS: image files, folders (their images, sorted), glob patterns (`'frames/*.png'`, `'**'`
recursive; quoted so the shell leaves them to us), video files (.mp4, .mov, .mkv, .avi, .webm,
.m4v, .ts), stream URLs (rtsp://, http(s)://, file://, ... anything FFmpeg reads) and webcams
(`0` or `/dev/video0`). Videos, streams and webcams need PyAV (`pip install 'ifa-rt[video]'`).

For each image, OUT/<stem>_labels.png (palettised: pixel values are the class ids) and
OUT/<stem>_overlay.png (image | labels blended over it, with a legend of the classes found).
For each video, stream or webcam, OUT/<stem>_overlay.mp4 (the labels blended over every
frame) and, with --label-frames, OUT/<stem>_labels/000000.png, ... (each frame's labels, as
the images' label PNGs). --no-overlay writes labels only: the label PNGs of images and the
label frames of videos. Webcams and live streams run until --max-frames or Ctrl-C. The
distinct sizes (up to --plan-sizes of the most common) are planned, so each image or frame
runs on a preallocated bucket. Prints per-image (or a per-frame progress bar with) latency
and a p50/p90 and images/s summary; sizes are printed H×W, as the API takes them.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..bench import percentile
from ..deploy.metadata import MIN_INPUT_SIZE
from ..video import VideoSource, is_video, label_png, parse_source, video_size
from .engine_args import add_engine_arguments, describe_engine

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_GLOB_CHARS = ("*", "?", "[")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt segment`."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUTS",
        help="image or video files, folders, glob patterns, stream URLs (rtsp://, http://, "
        "file://, ...) or webcams (0, /dev/video0)",
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--model", default="camvid", help="bundled model name or .ifa.pt path (default: camvid)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads per call")
    add_engine_arguments(parser)
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="start at once on TorchScript while the compiled engine builds (default: wait for "
        "it, once per machine: it is cached)",
    )
    parser.add_argument(
        "--plan-sizes",
        type=int,
        default=4,
        help="plan buckets for up to this many distinct image sizes (default: 4)",
    )
    parser.add_argument(
        "--no-overlay",
        action="store_true",
        help="write labels only: label PNGs for images, label frames for videos",
    )
    parser.add_argument(
        "--label-frames",
        action="store_true",
        help="videos, streams, webcams: also write each frame's labels as "
        "OUT/<stem>_labels/NNNNNN.png (palettised; pixel values are class ids)",
    )
    parser.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="videos, streams, webcams: at most N frames each (live sources otherwise run "
        "until Ctrl-C)",
    )


def collect_inputs(inputs: list[str]) -> tuple[list[Path], list[VideoSource]]:
    """The images and the video sources named: files, folders (their images, sorted), glob
    patterns (matching image and video files, sorted), stream URLs and webcams; ValueError
    for a missing one or when there is nothing at all."""
    images: list[Path] = []
    videos: list[VideoSource] = []

    def add(path: Path) -> None:
        if is_video(path):
            videos.append(VideoSource.from_path(path))
        else:
            images.append(path)

    for item in inputs:
        source = parse_source(item)
        p = Path(item)
        if source is not None and not p.exists():  # a file named "0" stays a file
            videos.append(source)
        elif p.is_dir():
            images += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            add(p)
        elif any(c in item for c in _GLOB_CHARS):
            matches = [Path(m) for m in sorted(glob.glob(item, recursive=True))]
            media = [m for m in matches if m.is_file() and _is_media(m)]
            if not media:
                raise ValueError(
                    f"segment: 'inputs': expected the pattern '{item}' to match image or video "
                    f"files, got {len(matches)} match(es) and none of them an image or video"
                )
            for m in media:
                add(m)
        else:
            raise ValueError(
                "segment: 'inputs': expected image or video files, folders, glob patterns, "
                f"stream URLs or webcams, got '{item}' (no such file or folder)"
            )
    if not images and not videos:
        raise ValueError(f"segment: 'inputs': expected at least one image, got none in {inputs}")
    return images, videos


def _is_media(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or is_video(path)


def _frame_sizes(images: list[Path], videos: list[VideoSource]) -> Counter:
    """(height, width) -> count over the images (headers only) and videos (first stream).

    A video source that does not open fails here, before the engine is built: a missing
    webcam or a refused stream is fatal, and the error names it. An unreadable image is
    reported by name when its turn comes.
    """
    sizes: Counter = Counter()
    for p in images:
        try:
            with Image.open(p) as im:  # reads the header only
                sizes[(im.height, im.width)] += 1
        except (OSError, ValueError):
            pass
    for source in videos:
        height, width, frames = video_size(source)
        sizes[(height, width)] += frames
    return sizes


def output_stems(paths: list[Path]) -> list[str]:
    """A distinct output name per input: the stem, or for clashing stems (a.jpg and a.png,
    d1/x.png and d2/x.png) the stem with the suffix and then the parent folder added."""
    stems = [p.stem for p in paths]
    out = []
    for p, stem in zip(paths, stems, strict=True):
        if stems.count(stem) > 1:
            stem = f"{p.parent.name}_{stem}_{p.suffix.lstrip('.').lower()}"
        out.append(stem)
    return _numbered(out)


def _numbered(stems: list[str]) -> list[str]:
    """Stems that still clash (same folder name, two streams of one name) get numbers."""
    out = list(stems)
    seen: Counter = Counter()
    for i, stem in enumerate(stems):
        seen[stem] += 1
        if stems.count(stem) > 1:
            out[i] = f"{stem}_{seen[stem]}"
    return out


def run_cli(args: argparse.Namespace) -> int:
    """Segment every image and video source; 0, or 1 when an image failed."""
    from ..runtime.segmenter import Segmenter

    paths, videos = collect_inputs(args.inputs)
    sizes = _frame_sizes(paths, videos)

    # Sizes below the exporter's minimum are not planned (the artifact would refuse the
    # plan); such an image is then refused alone, by name, when its turn comes.
    usable = [s for s, _ in sizes.most_common() if min(s) >= MIN_INPUT_SIZE]
    shapes = usable[: max(0, args.plan_sizes)]
    t0 = time.perf_counter()
    seg = Segmenter(
        args.model,
        device=args.device,
        precision=args.precision,
        shapes=shapes,
        threads=args.threads,
        runtime=args.runtime,
    )
    if not args.no_wait and not seg.wait_ready(0):
        print("compiling the fastest engine for this machine (once; cached) ...", flush=True)
        seg.wait_ready()
    print(f"{seg} ready in {time.perf_counter() - t0:.1f} s")
    print(describe_engine(seg))
    args.output.mkdir(parents=True, exist_ok=True)
    status = _segment_images(seg, paths, args) if paths else 0
    stems = _numbered([source.stem for source in videos])
    for source, stem in zip(videos, stems, strict=True):
        from ..video import segment_video

        if source.live and args.max_frames is None:
            print(f"reading {source.name} until Ctrl-C (or give --max-frames N)", flush=True)
        overlay = None if args.no_overlay else args.output / f"{stem}_overlay.mp4"
        frames = args.output / f"{stem}_labels" if args.no_overlay or args.label_frames else None
        report = segment_video(seg, source, overlay, labels_dir=frames, max_frames=args.max_frames)
        wrote = ", ".join(str(p) for p in report.outputs)
        print(f"{source.name}: {report.summary()}; wrote {wrote}")
    return status


def _segment_images(seg, paths: list[Path], args: argparse.Namespace) -> int:
    """Segment the image files: label PNGs, overlays, per-image latency and a summary."""
    from tqdm import tqdm

    from ..viz import side_by_side

    latencies = []
    found: Counter = Counter()
    start = time.perf_counter()
    failed: list[str] = []
    for path, stem in tqdm(
        list(zip(paths, output_stems(paths), strict=True)), unit="img", disable=len(paths) < 2
    ):
        try:
            with Image.open(path) as opened:
                image = np.asarray(opened.convert("RGB"))
            t = time.perf_counter()
            labels = seg(image)
        except (OSError, ValueError) as exc:  # unreadable file, or an image the model refuses
            failed.append(str(path))
            tqdm.write(f"ifa-rt segment: {path}: error: {exc}", file=sys.stderr)
            continue
        latencies.append((time.perf_counter() - t) * 1000.0)
        found.update(np.unique(labels).tolist())
        label_png(labels, seg.palette).save(args.output / f"{stem}_labels.png")
        if not args.no_overlay:
            side_by_side(
                image, labels, seg.palette, seg.classes, path=args.output / f"{stem}_overlay.png"
            )
        tqdm.write(f"{path.name}: {image.shape[0]}x{image.shape[1]} {latencies[-1]:.1f} ms")
    wall = time.perf_counter() - start
    if not latencies:
        raise RuntimeError(f"segment: none of the {len(paths)} images could be segmented")
    ms = np.asarray(latencies)
    classes = ", ".join(seg.classes[c] for c in sorted(found) if c < len(seg.classes))
    print(
        f"{len(latencies)} images: p50 {percentile(ms, 0.5):.1f} ms, "
        f"p90 {percentile(ms, 0.9):.1f} ms, "
        f"{len(paths) / wall:.2f} images/s (with file I/O); fallback runs "
        f"{seg.stats()['fallback_calls']}; classes found: {classes}"
    )
    print(f"wrote {args.output}")
    if failed:
        print(f"{len(failed)} of {len(paths)} images failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
