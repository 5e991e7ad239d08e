#!/usr/bin/env python
"""Interleaved latency benchmark of every way to run IFA on this machine, side by side.

Variants (runners.py), all uint8 images [B,H,W,3] in, uint8 labels [B,H,W] out, fp32, T threads:
  eager           the reference model in eager PyTorch (timed only with --with-eager: slow)
  segmenter       ifa_rt.Segmenter on the TorchScript artifact (.ifa.pt)
  segmenter_aoti  ifa_rt.Segmenter on the AOTInductor package (.pt2)
  segmenter_int8  ifa_rt.Segmenter on the int8 package (ifa_rt.quantize; reduced precision)
  segmenter_bf16  ifa_rt.Segmenter computing in bf16 (reduced precision; slow without AMX)
  torch_compile   torch.compile (inductor, freezing) of the fused model
  onnxruntime     ONNX Runtime, CPU EP, on the fused ONNX export
  openvino        OpenVINO, CPU, on the same ONNX file (f32 hint, latency hint)
  openvino_default OpenVINO with only the thread count set: it picks the precision itself
                  (bf16 on AMX CPUs), what a user gets with no options

Steps:
  1. Build the model once (source.py): seeded random weights of --preset, --checkpoint, or with
     --model the bundled artifact for the segmenter and its architecture for the others.
  2. Per shape, build every runner (exports and compiles happen here and in the warm-up);
     one that cannot be built is recorded as skipped (missing package or API) or error.
  3. Per batch: the same real images for all; the eager labels once (untimed unless
     --with-eager); the interleaved rounds (measure.py); per-variant records with
     p50/p90/p99, speed-up over the segmenter and label agreement with the eager labels.
  4. After the timed rounds (unless --no-correctness), each variant's logits from its own
     engine and precision against the eager fp32 logits, and its timed labels on the pixels
     that are no near-tie for its precision (correctness.py): the check that means something
     with random weights, where plain label agreement mixes errors with coin flips.
  5. Write JSON, a markdown table and plots (report.py).

    .venv/bin/python scripts/bench/run.py --model camvid --shapes 360x480 --batches 1,4
    .venv/bin/python scripts/bench/run.py --preset cityscapes-r50 --shapes 512x1024 --with-eager
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Every variant keeps its oneDNN primitives cached side by side (read when oneDNN first runs).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")

import torch  # noqa: E402
from correctness import check_cell  # noqa: E402
from host import host_info, loadavg  # noqa: E402
from measure import cell_records, measure_cell  # noqa: E402
from report import markdown, write  # noqa: E402
from runners import VARIANTS, EagerRunner, SkipVariant, make_runner  # noqa: E402
from source import ModelSource  # noqa: E402

from ifa_rt.bench import load_images, parse_shape  # noqa: E402

SCHEMA = "ifa_rt.bench/2"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_VARIANTS = "segmenter,segmenter_aoti,torch_compile,onnxruntime,openvino"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring); checked, lists split."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="cityscapes-r50", help="architecture (random weights)")
    p.add_argument(
        "--model",
        help="bundled model (e.g. camvid): the segmenter runs it; the "
        "others its architecture with random weights",
    )
    p.add_argument("--checkpoint", help="weights for every variant (not with --model)")
    p.add_argument("--shapes", default="512x1024", help="comma list of HxW")
    p.add_argument("--batches", default="1", help="comma list, e.g. 1,4")
    p.add_argument("--reps", default="20", help="timed rounds: one value or one per shape")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per variant and cell")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every variant")
    p.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma list of {','.join(v for v in VARIANTS if v != 'eager')}",
    )
    p.add_argument("--with-eager", action="store_true", help="time the eager model too")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument(
        "--no-correctness",
        dest="correctness",
        action="store_false",
        help="skip the logits and clear-margin labels check (correctness.py)",
    )
    p.add_argument("--out", help="output prefix (default docs/bench/<model or preset>-cpu)")
    p.add_argument("--no-plot", dest="plot", action="store_false", help="skip the PNG plots")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.shape_list = [parse_shape(s) for s in args.shapes.split(",")]
    args.batch_list = [int(b) for b in args.batches.split(",")]
    reps = [int(r) for r in args.reps.split(",")]
    args.rep_list = reps * len(args.shape_list) if len(reps) == 1 else reps
    args.variant_list = ["eager"] * args.with_eager + [
        v for v in args.variants.split(",") if v != "eager"
    ]
    bad = [v for v in args.variant_list if v not in VARIANTS]
    if bad or len(args.rep_list) != len(args.shape_list) or min(args.rep_list) < 1:
        p.error(
            f"bad --variants {bad} (expected {list(VARIANTS)}) or --reps {args.reps!r} "
            f"(one value >= 1, or one per shape)"
        )
    if min(args.batch_list) < 1 or args.warmup < 1 or args.threads < 1:
        p.error("--batches, --warmup and --threads: expected values >= 1")
    if args.model and args.checkpoint:
        p.error("--model and --checkpoint: expected one of them, got both")
    return args


def build_runners(args, source: ModelSource, shape, bar) -> tuple[dict, dict]:
    """Every variant's runner for one shape; (runners, {variant: (status, reason)})."""
    runners, failed = {}, {}
    for name in args.variant_list:
        bar.set_postfix_str(f"{shape[0]}x{shape[1]}: building {name}")
        try:
            runners[name] = make_runner(name, source, shape, max(args.batch_list), args.threads)
        except (SkipVariant, ImportError) as exc:
            failed[name] = ("skipped", str(exc))
        except Exception as exc:  # recorded, so one broken variant does not end the run
            failed[name] = ("error", f"{type(exc).__name__}: {str(exc).strip()[:500]}")
    return runners, failed


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The whole benchmark (exported files go to `workdir`); the JSON-ready result."""
    from tqdm import tqdm

    torch.set_num_threads(args.threads)
    source = ModelSource(
        args.preset, workdir, bundled=args.model, checkpoint=args.checkpoint, seed=args.seed
    )
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "command": shlex.join(["scripts/bench/run.py", *args.argv]),
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": host_info(),
        "loadavg_start": loadavg(),
        "config": {
            "preset": source.preset,
            "model": args.model,
            "checkpoint": args.checkpoint,
            "precision": "fp32",
            "shapes": [list(s) for s in args.shape_list],
            "batches": args.batch_list,
            "reps": args.rep_list,
            "warmup": args.warmup,
            "threads": args.threads,
            "variants": args.variant_list,
            "seed": args.seed,
            "correctness": args.correctness,
        },
        "weights": source.weights(),
    }
    reference = None  # the eager model, for labels only, when it is not a timed variant
    records: list[dict] = []
    total = sum(r * len(args.batch_list) * len(args.variant_list) for r in args.rep_list)
    bar = tqdm(total=total, desc="bench", unit="call", dynamic_ncols=True)
    for shape, reps in zip(args.shape_list, args.rep_list, strict=True):
        runners, failed = build_runners(args, source, shape, bar)
        for batch in args.batch_list:
            bar.set_postfix_str(f"{batch}x{shape[0]}x{shape[1]}: warm-up, {reps} rounds")
            images, inputs = load_images(shape, batch)
            timings, errors = measure_cell(runners, images, reps, args.warmup, bar.update)
            cell_failed = {**failed, **{k: ("error", e) for k, e in errors.items()}}
            bar.update(reps * len(cell_failed))  # keep the bar's total honest
            reference = runners.get("eager") or reference or EagerRunner(source)
            eager_labels = timings["eager"].labels if "eager" in timings else reference(images)
            correctness = None
            if args.correctness:
                bar.set_postfix_str(f"{batch}x{shape[0]}x{shape[1]}: logits check")
                labels = {name: t.labels for name, t in timings.items()}
                correctness = check_cell(
                    runners,
                    labels,
                    images,
                    reference.logits(images),
                    source.same_weights_as_eager,
                )
            base = {"batch": batch, "height": shape[0], "width": shape[1], "inputs": inputs}
            infos = {name: r.info for name, r in runners.items()}
            cell = cell_records(
                timings,
                cell_failed,
                base,
                eager_labels,
                source.same_weights_as_eager,
                infos,
                correctness,
            )
            for rec in cell:
                rec["weights"] = source.weights_of(rec["variant"])
            records += cell
            result["inputs"] = inputs
        del runners
        gc.collect()  # free one shape's engines and buffers before the next shape's
    bar.close()
    result.update(results=records, loadavg_end=loadavg())
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON, markdown and plots; print the table."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ifa-rt-bench-") as tmp:
        result = run(args, Path(tmp))
    result["wall_s"] = time.perf_counter() - t0
    name = args.model or result["config"]["preset"]
    prefix = Path(args.out) if args.out else REPO / "docs" / "bench" / f"{name}-cpu"
    paths = write(result, prefix, plots=args.plot)
    print(markdown(result))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
