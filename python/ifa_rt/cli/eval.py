"""`ifa-rt eval`: mIoU, per-class IoU and a confusion-matrix PNG on a labelled dataset."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data import dataset_info
from ..evaluate import evaluate, load_model, model_predictor, segmenter_predictor


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt eval`."""
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="PyTorch checkpoint (ifa_rt.checkpoint format)")
    src.add_argument("--artifact", help="exported .ifa.pt run through the C++ runtime")
    parser.add_argument("--dataset", default="camvid", choices=["camvid", "cityscapes"])
    parser.add_argument("--split", default="val", help="folder(s), e.g. val or train+val")
    parser.add_argument(
        "--sequences",
        nargs="+",
        default=None,
        metavar="SEQ",
        help="evaluate only these recordings of the split (e.g. 0006R0)",
    )
    parser.add_argument("--data-root", default=None, help="default: $IFA_RT_DATA or ../shared/data")
    parser.add_argument("--mode", default="whole", choices=["whole", "slide"])
    parser.add_argument("--window", type=int, default=769)
    parser.add_argument("--stride", type=int, default=513)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N images")
    parser.add_argument("--out", default=None, help="folder for metrics.json + confusion.png")


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt eval`; prints mIoU, per-class IoU and pixel accuracy."""
    from ..data import camvid, cityscapes

    info = dataset_info(args.dataset)
    ds = (camvid if args.dataset == "camvid" else cityscapes)(args.split, args.data_root)
    if args.sequences:
        ds.keep_sequences(args.sequences)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.checkpoint:
        predictor = model_predictor(
            load_model(args.checkpoint, args.device),
            args.device,
            args.mode,
            args.window,
            args.stride,
        )
    else:
        from .. import Segmenter

        predictor = segmenter_predictor(
            Segmenter(args.artifact, device=args.device, precision="fp32"),
            args.mode,
            args.window,
            args.stride,
        )
    t0 = time.time()
    cm = evaluate(predictor, ds, info.num_classes, limit=args.limit, progress=True)
    res = cm.summary(info.classes)
    res.update(
        dataset=args.dataset,
        split=args.split,
        sequences=args.sequences or ds.sequences(),
        mode=args.mode,
        images=min(len(ds), args.limit or len(ds)),
        seconds=round(time.time() - t0, 1),
    )
    print(f"mIoU {res['miou']:.4f}  pixel acc {res['pixel_accuracy']:.4f}")
    for name, v in res["per_class_iou"].items():
        print(f"  {name:14s} {'-' if v is None else f'{v:.4f}'}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(res, indent=2))
        np.save(out / "confusion.npy", cm.matrix)
        from ..viz import plot_confusion

        plot_confusion(cm.matrix, info.classes, out / "confusion.png")
    return 0
