#!/usr/bin/env python
"""What a user gets with no options, against the fastest peers, on the trained bundled model.

One interleaved run over real CamVid val frames (360x480, batch 1, T threads): every variant
gets the same frame in turn, so load changes hit all alike. Variants:
  default         ifa_rt.Segmenter("camvid", shapes=...) after its tier-up (what every entry
                  point runs: the fastest gated engine for this CPU)
  fp32_aoti       precision="fp32", runtime="aoti" (the exact path, compiled)
  fp32_torchscript precision="fp32", runtime="jit" (the portable engine)
  bf16            precision="bf16", runtime="aoti" (compiled, behind its gate)
  bf16_torchscript precision="bf16", runtime="jit" (the TorchScript bf16 engine)
  openvino        OpenVINO with no options but the thread count (it picks bf16 on AMX CPUs)
  openvino_f32    OpenVINO with INFERENCE_PRECISION_HINT=f32
  onnxruntime     ONNX Runtime, CPU EP, fp32
  torch_compile   torch.compile (inductor, freezing) of the same fused model
Each row: p50/p90/p99 ms, agreement of labels with fp32 TorchScript, mIoU on the frames'
ground truth. The bundled model was trained on every CamVid frame here (train+val), so the
mIoU is not a held-out figure: it only shows what each engine's arithmetic costs.

    .venv/bin/python scripts/bench_defaults.py --frames 40 --rounds 3 \
        --json docs/bench/defaults-camvid-360x480.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from host import host_info, loadavg  # noqa: E402

import ifa_rt  # noqa: E402
from ifa_rt.bench import percentile  # noqa: E402
from ifa_rt.bundled import resolve  # noqa: E402
from ifa_rt.data import camvid  # noqa: E402
from ifa_rt.side_files import file_sha256  # noqa: E402

SHAPE = (360, 480)


def segmenters(threads: int) -> dict:
    """The project's variants, built (and the default's tier-up waited for)."""
    out = {}
    default = ifa_rt.Segmenter("camvid", shapes=[SHAPE], threads=threads)
    default.wait_ready()
    out["default"] = default
    out["fp32_aoti"] = ifa_rt.Segmenter(
        "camvid", precision="fp32", runtime="aoti", shapes=[SHAPE], threads=threads
    )
    out["fp32_torchscript"] = ifa_rt.Segmenter(
        "camvid", precision="fp32", runtime="jit", shapes=[SHAPE], threads=threads
    )
    out["bf16"] = ifa_rt.Segmenter(
        "camvid", precision="bf16", runtime="aoti", shapes=[SHAPE], threads=threads
    )
    out["bf16_torchscript"] = ifa_rt.Segmenter(
        "camvid", precision="bf16", runtime="jit", shapes=[SHAPE], threads=threads
    )
    return {name: seg.segment for name, seg in out.items()}, {
        name: seg.stats()["engine"] for name, seg in out.items()
    }


def peers(threads: int, tmp: Path) -> dict:
    """OpenVINO, ONNX Runtime and torch.compile on the same trained weights."""
    from ifa_rt.deploy.export import ImageSegmenter
    from ifa_rt.deploy.fuse import fuse_model
    from ifa_rt.deploy.onnx_export import export_onnx, onnx_session

    model = ifa_rt.load_checkpoint("camvid").eval()
    meta = ifa_rt.Segmenter("camvid", precision="fp32", runtime="jit").metadata
    mean, std = tuple(meta["mean"]), tuple(meta["std"])
    onnx = export_onnx(
        model, tmp / "camvid.onnx", height=SHAPE[0], width=SHAPE[1], mean=mean, std=std
    )
    out = {}
    import openvino as ov

    core = ov.Core()
    for name, config in (
        ("openvino", {"INFERENCE_NUM_THREADS": threads}),
        ("openvino_f32", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}),
    ):
        request = core.compile_model(
            core.read_model(str(onnx)), "CPU", config
        ).create_infer_request()
        out[name] = lambda x, r=request: r.infer({0: x[None]}, share_inputs=True)[0][0]
    session = onnx_session(onnx, threads=threads, spinning=False)
    feed = session.get_inputs()[0].name
    out["onnxruntime"] = lambda x: session.run(None, {feed: x[None]})[0][0]
    torch.set_num_threads(threads)
    torch._inductor.config.freezing = True
    module = torch.compile(ImageSegmenter(fuse_model(model), mean, std).eval())

    def compiled(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(x[None])).numpy()[0]

    out["torch_compile"] = compiled
    return out


def miou(pred: list[np.ndarray], truth: list[np.ndarray], classes: int) -> float:
    """Mean IoU over the classes present (11 = void ignored, as in the model card)."""
    cm = np.zeros((classes, classes), np.int64)
    for p, t in zip(pred, truth, strict=True):
        keep = t < classes
        cm += np.bincount(t[keep] * classes + p[keep], minlength=classes**2).reshape(
            classes, classes
        )
    iou = np.diag(cm) / np.maximum(cm.sum(0) + cm.sum(1) - np.diag(cm), 1)
    return float(iou[cm.sum(1) > 0].mean())


def main() -> int:
    """Build every variant, time them interleaved, print a table and write the JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3, help="passes over the frames")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default=os.environ.get("IFA_RT_DATA", "../shared/data"))
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    ds = camvid("val", Path(args.data) / "camvid")
    step = max(1, len(ds) // args.frames)
    pairs = [ds.read(i) for i in range(0, len(ds), step)][: args.frames]
    frames, truth = [x for x, _ in pairs], [t for _, t in pairs]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        runs, engines = segmenters(args.threads)
        runs.update(peers(args.threads, Path(tmp)))
        print(f"built {len(runs)} variants in {time.perf_counter() - t0:.0f} s", flush=True)
        labels = {name: [np.asarray(run(f)) for f in frames] for name, run in runs.items()}
        times: dict[str, list[float]] = {name: [] for name in runs}
        load_before = loadavg()
        for _ in tqdm(range(args.rounds), desc="rounds"):
            for frame in frames:
                for name, run in runs.items():
                    t = time.perf_counter()
                    run(frame)
                    times[name].append((time.perf_counter() - t) * 1e3)
    ref = labels["fp32_torchscript"]
    rows = []
    for name in runs:
        ms = np.asarray(times[name])
        same = np.mean([np.mean(a == b) for a, b in zip(labels[name], ref, strict=True)])
        rows.append(
            {
                "variant": name,
                "engine": engines.get(name, name),
                "p50_ms": round(percentile(ms, 0.5), 2),
                "p90_ms": round(percentile(ms, 0.9), 2),
                "p99_ms": round(percentile(ms, 0.99), 2),
                "agreement_with_fp32": round(float(same), 5),
                "miou": round(miou(labels[name], truth, 11), 4),
            }
        )
    rows.sort(key=lambda r: r["p50_ms"])
    print(
        "| variant | engine | p50 ms | p90 | p99 | labels = fp32 | mIoU |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['variant']} | {r['engine']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} "
            f"| {100 * r['agreement_with_fp32']:.2f} % | {r['miou']:.4f} |"
        )
    record = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "host": host_info(),
        "load_before": load_before,
        "load_after": loadavg(),
        "weights": "bundled camvid (trained; camvid.ifa.pt / camvid.ckpt.pt)",
        "weights_sha256": file_sha256(resolve("camvid")),
        "frames": len(frames),
        "rounds": args.rounds,
        "threads": args.threads,
        "shape": list(SHAPE),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
