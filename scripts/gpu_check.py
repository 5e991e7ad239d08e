"""The CUDA path's one prepared check: accuracy, memory, concurrency, capture safety, latency.

    python scripts/gpu_check.py --out DIR [--dry-run] [--data DATA]

Run by scripts/gpu_check.sh after it built the extension with CUDA against this machine's
torch. Every step is timed and recorded even when it fails, so one run on a scarce GPU
returns everything it learnt: DIR/gpu_check.json (all numbers) and DIR/gpu_check.md (the
tables for docs/benchmarks.md). `--dry-run` runs the same steps on the CPU at small sizes
(no CUDA graph capture, no torch.compile), to test this script where no GPU is.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gpu_check_report import Report, StepFailed, StepSkipped

REPO = Path(__file__).resolve().parents[1]
# Shapes per model; the dry run keeps the trained model at its real size (its agreement goal
# means something there) and shrinks the R50, whose CPU cost is the dry run's time.
FULL_SHAPES = {"camvid": [(360, 480), (512, 1024)], "r50": [(360, 480), (512, 1024), (1024, 2048)]}
DRY_SHAPES = {"camvid": [(360, 480)], "r50": [(64, 96)]}
AGREEMENT_GOAL = {"fp32": 0.999, "fp16": 0.995, "bf16": 0.995}  # the GPU goals
# The dry run checks the plumbing: the CPU's bf16/fp16 kernels are not the GPU's (the bundled
# bf16 gate is 99 % over 101 frames; 4 frames at 360x480 measured 99.09 % here).
DRY_AGREEMENT_GOAL = {"fp32": 0.999, "fp16": 0.98, "bf16": 0.98}


def load_images(data: Path, shape: tuple[int, int], count: int) -> list[np.ndarray]:
    """Real street frames (CamVid val, then the Cityscapes demo frame) resized to `shape`."""
    paths = sorted((data / "camvid" / "images" / "val").glob("*.jpg"))[: max(1, count - 1)]
    paths += [data / "cityscapes_sample" / "demo_frankfurt_1024x512.png"]
    h, w = shape
    return [
        np.asarray(Image.open(p).convert("RGB").resize((w, h), Image.BILINEAR))
        for p in paths
        if p.is_file()
    ][:count]


def percentiles(ms: list[float]) -> dict:
    """p50/p90/p99 of a latency list, in ms, rounded (the project's one nearest-rank rule)."""
    from ifa_rt.bench import percentile  # imported once the package is built

    p50, p90, p99 = (percentile(ms, q) for q in (0.5, 0.9, 0.99))
    return {
        "p50_ms": round(float(p50), 2),
        "p90_ms": round(float(p90), 2),
        "p99_ms": round(float(p99), 2),
    }


def time_calls(fn: Callable[[], object], iters: int, sync: bool) -> list[float]:
    """Wall time of each of `iters` calls (device synchronised when `sync`)."""
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def hammer(runner, images: list[np.ndarray], threads: int = 8, calls: int = 20) -> list[str]:
    """`threads` threads each make `calls` calls; the results that differ from serial ones."""
    want = [runner(im) for im in images]
    errors: list[str] = []

    def work(k: int) -> None:
        for i in range(calls):
            j = (i + k) % len(images)
            if not np.array_equal(runner(images[j]), want[j]):
                errors.append(f"thread {k} call {i}")

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return errors


class GpuCheck:
    """The steps, sharing the artifacts they export and the device they test."""

    def __init__(self, args: argparse.Namespace, report: Report) -> None:
        self.args, self.report = args, report
        self.dry = args.dry_run
        self.device = "cpu" if self.dry else "cuda"
        self.shapes = DRY_SHAPES if self.dry else FULL_SHAPES
        self.artifacts: dict[str, Path] = {}

    def environment(self) -> dict:
        from ifa_rt import _core

        has_cuda = _core.has_cuda_engine()
        if not self.dry and not has_cuda:
            raise RuntimeError("the extension was built without the CUDA engine")
        return {
            "cuda_engine": has_cuda,
            "devices": torch.cuda.device_count(),
            "note": f"CUDA engine compiled in: {has_cuda}",
        }

    def bundled_artifact(self) -> dict:
        """The shipped artifact under this torch: it loads, or is refused with a clear error."""
        from ifa_rt import Segmenter

        try:
            Segmenter("camvid")
            return {"note": f"the bundled artifact loads under torch {torch.__version__}"}
        except (RuntimeError, ValueError) as exc:
            return {
                "note": f"refused cleanly under torch {torch.__version__} (re-exported "
                f"from the checkpoint below): {str(exc)[:200]}"
            }

    def export_artifacts(self) -> dict:
        """camvid from its shipped checkpoint; cityscapes-r50 with random BN statistics."""
        from ifa_rt import load_checkpoint
        from ifa_rt.deploy.export import export
        from ifa_rt.model import build_model

        out = self.report.out / "artifacts"
        self.artifacts["camvid"] = out / "camvid.ifa.pt"
        export(load_checkpoint(self.args.checkpoint), self.artifacts["camvid"])
        r50 = build_model("cityscapes-r50", pretrained_backbone=False).eval()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():  # trained-looking statistics, so labels are not all one class
            for m in r50.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
        self.artifacts["r50"] = out / "cityscapes-r50.ifa.pt"
        export(r50, self.artifacts["r50"], verify=False)
        self.r50_eager = r50
        return {"note": ", ".join(p.name for p in self.artifacts.values())}

    def accuracy(self) -> dict:
        """Labels of fp32/fp16/bf16 on the device vs CPU fp32, and allocations after warm-up."""
        from ifa_rt import Segmenter

        rows, failed = [], []
        goal = DRY_AGREEMENT_GOAL if self.dry else AGREEMENT_GOAL
        for name in ("camvid", "r50"):
            for shape in self.shapes[name]:
                images = load_images(self.args.data, shape, 2 if self.dry else 4)
                cpu = Segmenter(str(self.artifacts[name]), shapes=[shape])
                want = [cpu(im) for im in images]
                for precision in ("fp32", "fp16", "bf16"):
                    seg = Segmenter(
                        str(self.artifacts[name]),
                        device=self.device,
                        precision=precision,
                        shapes=[shape],
                    )
                    for _ in range(3):
                        got = [seg(im) for im in images]
                    agree = float(
                        np.mean([np.mean(g == w) for g, w in zip(got, want, strict=True)])
                    )
                    stats = seg.stats()
                    row = {
                        "model": name,
                        "shape": f"{shape[0]}x{shape[1]}",
                        "precision": precision,
                        "agreement": f"{agree:.4%}",
                        "allocations_after_warmup": stats["allocations_after_warmup"],
                        "fallback_calls": stats["fallback_calls"],
                    }
                    rows.append(row)
                    # Random R50 weights give near-ties everywhere: reported, not gated.
                    if name == "camvid" and agree < goal[precision]:
                        failed.append(f"{name} {row['shape']} {precision} {agree:.4%}")
                    if stats["allocations_after_warmup"] != 0 or stats["fallback_calls"]:
                        failed.append(f"{name} {row['shape']} {precision} allocated/fell back")
        if failed:
            raise StepFailed("; ".join(failed), rows=rows)
        return {"rows": rows}

    def threads(self) -> dict:
        """8 threads on one engine and on a pool of 2: every result equals the serial one."""
        from ifa_rt import Segmenter, SegmenterPool

        shape = self.shapes["camvid"][0]
        images = load_images(self.args.data, shape, 4)
        notes = []
        for runner in (
            Segmenter(str(self.artifacts["camvid"]), device=self.device, shapes=[shape]),
            SegmenterPool(
                str(self.artifacts["camvid"]), size=2, device=self.device, shapes=[shape]
            ),
        ):
            errors = hammer(runner, images, calls=4 if self.dry else 20)
            if errors:
                raise AssertionError(f"{type(runner).__name__}: wrong results: {errors[:5]}")
            notes.append(f"{type(runner).__name__}: 8 threads, all results equal")
        return {"note": "; ".join(notes)}

    def second_engine_while_serving(self) -> dict:
        """Build (warm up, capture) an engine while another serves on other threads."""
        from ifa_rt import Segmenter

        shape = self.shapes["camvid"][0]
        image = load_images(self.args.data, shape, 1)[0]
        first = Segmenter(str(self.artifacts["camvid"]), device=self.device, shapes=[shape])
        want, stop, errors, calls = first(image), threading.Event(), [], [0]

        def serve() -> None:
            while not stop.is_set():
                try:
                    if not np.array_equal(first(image), want):
                        errors.append("wrong labels")
                    calls[0] += 1
                except Exception as exc:  # noqa: BLE001 - recorded for the report
                    errors.append(str(exc))

        workers = [threading.Thread(target=serve) for _ in range(2)]
        for t in workers:
            t.start()
        try:
            second = Segmenter(
                str(self.artifacts["r50"]),
                device=self.device,
                precision="fp16",
                shapes=[self.shapes["r50"][-1]],
            )
            second(load_images(self.args.data, self.shapes["r50"][-1], 1)[0])
        finally:
            stop.set()
            for t in workers:
                t.join()
        if errors:
            raise AssertionError(f"the serving engine failed while another was built: {errors[:3]}")
        return {"note": f"{calls[0]} calls served while the second engine was built"}

    def capture_failure(self) -> dict:
        """An artifact that reads back to the host cannot be captured: a clear error, and
        the process (an engine built before, one built after) stays healthy."""
        if self.dry:
            raise StepSkipped("the dry run has no CUDA graphs to capture")
        import subprocess
        import sys

        from ifa_rt import Segmenter

        bad = self.report.out / "bad"
        subprocess.run(
            [sys.executable, str(REPO / "tests/fixtures/make_bad_artifacts.py"), str(bad)],
            check=True,
            capture_output=True,
        )
        shape = self.shapes["camvid"][0]
        image = load_images(self.args.data, shape, 1)[0]
        before = Segmenter(str(self.artifacts["camvid"]), device="cuda", shapes=[shape])
        want = before(image)
        try:
            Segmenter(str(bad / "data_shape.ifa.pt"), device="cuda", shapes=[(64, 64)])
        except RuntimeError as exc:
            message = str(exc)
        else:
            raise AssertionError("a graph that syncs with the host was captured")
        if "capture" not in message:
            raise AssertionError(f"expected a capture error, got: {message}")
        after = Segmenter(str(self.artifacts["camvid"]), device="cuda", shapes=[shape])
        if not (np.array_equal(before(image), want) and np.array_equal(after(image), want)):
            raise AssertionError("engines gave other labels after the failed capture")
        return {"note": message[:200]}


def main(argv: list[str] | None = None) -> int:
    """Run every step; exit 1 if any failed (the report is written either way)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json / .md")
    p.add_argument(
        "--data",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="folder with camvid/ and cityscapes_sample/",
    )
    p.add_argument("--dry-run", action="store_true", help="same steps on the CPU, small sizes")
    p.add_argument(
        "--checkpoint",
        default="camvid",
        help="the trained CamVid checkpoint (default: the bundled one)",
    )
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        p.error("no CUDA device; use --dry-run to test this script on a CPU")
    report = Report(args.out, args.dry_run)
    check = GpuCheck(args, report)
    report.step("environment", check.environment)
    report.step("bundled artifact under this torch", check.bundled_artifact)
    if report.step("export artifacts from checkpoints", check.export_artifacts) is None:
        return 1  # everything below needs them
    report.step("labels vs CPU fp32, allocations after warm-up", check.accuracy)
    report.step("8 threads: one engine, a pool of 2", check.threads)
    report.step("second engine built while the first serves", check.second_engine_while_serving)
    report.step("forced capture failure", check.capture_failure)
    import gpu_check_io  # the later steps reuse this module's helpers
    import gpu_check_latency

    report.step("latency vs eager and torch.compile", lambda: gpu_check_latency.latency(check))
    report.step(
        "device-memory I/O: CUDA tensors in and out", lambda: gpu_check_io.device_memory(check)
    )
    report.step(
        "staging overlapped with compute: 1 vs 2 threads, Batcher",
        lambda: gpu_check_io.overlap(check),
    )
    failed = [s["step"] for s in report.steps if s["ok"] is False]
    skipped = [s["step"] for s in report.steps if s["ok"] is None]
    print(
        f"[gpu_check] wrote {args.out}/gpu_check.md; failed steps: {failed or 'none'}; "
        f"skipped steps: {skipped or 'none'}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
