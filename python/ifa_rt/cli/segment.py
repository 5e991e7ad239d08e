"""`ifa-rt segment`: segment images or videos with the C++ runtime, write labels and overlays.

    ifa-rt segment IMAGES_DIRS_OR_VIDEOS... -o OUT [--model camvid|PATH] [--device cpu]

For each image, OUT/<stem>_labels.png (palettised: pixel values are the class ids) and
OUT/<stem>_overlay.png (image | labels blended over it, with a legend of the classes found).
For each video (.mp4, .mov, .mkv, .avi, .webm; needs PyAV), OUT/<stem>_overlay.mp4 with the
labels blended over every frame. The distinct sizes (up to --plan-sizes of the most common)
are planned, so each image or frame runs on a preallocated bucket. Prints per-image (or a
per-frame progress bar with) latency and a p50/p90 and images/s summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from ..deploy.metadata import MIN_INPUT_SIZE
from ..video import is_video, video_size
from .engine_args import add_engine_arguments, describe_engine

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt segment`."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="IMAGES_DIRS_OR_VIDEOS",
        help="image files, folders (their images, sorted) or video files",
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
    parser.add_argument("--no-overlay", action="store_true", help="write label PNGs only")
    parser.add_argument(
        "--max-frames", type=int, default=None, help="videos: segment at most N frames each"
    )


def collect_images(inputs: list[str]) -> list[Path]:
    """Image or video files named, or images found (sorted) in the folders named;
    ValueError if none/missing."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            paths.append(p)
        else:
            raise ValueError(
                f"segment: 'inputs': expected image files or folders, got '{item}' "
                "(no such file or folder)"
            )
    if not paths:
        raise ValueError(f"segment: 'inputs': expected at least one image, got none in {inputs}")
    return paths


def _frame_sizes(paths: list[Path]) -> Counter:
    """(height, width) -> count over the images (headers only) and videos (first stream)."""
    sizes: Counter = Counter()
    for p in paths:
        try:
            if is_video(p):
                height, width, frames = video_size(p)
                sizes[(height, width)] += frames
                continue
            with Image.open(p) as im:  # reads the header only
                sizes[(im.height, im.width)] += 1
        except (OSError, ValueError):
            pass  # reported by name when its turn comes
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
    seen: Counter = Counter()
    for i, stem in enumerate(out):  # still clashing (same folder name): number them
        seen[stem] += 1
        if out.count(stem) > 1:
            out[i] = f"{stem}_{seen[stem]}"
    return out


def _label_png(labels: np.ndarray, palette: list[list[int]]) -> Image.Image:
    """Class indices as a palettised PNG: pixel values stay the class ids, viewers show colours."""
    png = Image.fromarray(labels, mode="P")
    png.putpalette([v for rgb in palette for v in rgb])
    return png


def run_cli(args: argparse.Namespace) -> int:
    """Segment every image; returns 0."""
    from ..segmenter import Segmenter

    paths = collect_images(args.inputs)
    videos = [p for p in paths if is_video(p)]
    paths = [p for p in paths if not is_video(p)]
    sizes = _frame_sizes(paths + videos)

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
    for video, stem in zip(videos, output_stems(videos), strict=True):
        from ..video import segment_video

        report = segment_video(
            seg, video, args.output / f"{stem}_overlay.mp4", max_frames=args.max_frames
        )
        print(f"{video.name}: {report.summary()}; wrote {report.output}")
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
        _label_png(labels, seg.palette).save(args.output / f"{stem}_labels.png")
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
        f"{len(latencies)} images: p50 {np.percentile(ms, 50):.1f} ms, "
        f"p90 {np.percentile(ms, 90):.1f} ms, "
        f"{len(paths) / wall:.2f} images/s (with file I/O); fallback runs "
        f"{seg.stats()['fallback_calls']}; classes found: {classes}"
    )
    print(f"wrote {args.output}")
    if failed:
        print(f"{len(failed)} of {len(paths)} images failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
