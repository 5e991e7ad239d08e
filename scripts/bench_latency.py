#!/usr/bin/env python
"""Interleaved latency benchmark of every way to run IFA (DESIGN.md "Measuring", issue #6).

Variants (all take the same uint8 [B,H,W,3] images and return uint8 labels [B,H,W]):
  reference    the reference model, eager PyTorch (normalisation + argmax around it)
  fused        the exact fused form (IFA_SPEC §4), eager
  torchscript  the `.ifa.pt` artifact from Python: torch.jit.load + torch.jit.freeze
  segmenter    the C++ runtime through `ifa_rt.Segmenter`, in the benchmark's process
  segmenter_proc  the same, alone in a fresh Python process per burst (isolated like the tool)
  cpp_bench    the C++ runtime through the `ifa-rt-bench` tool (a subprocess, run in bursts)
  onnxruntime  ONNX Runtime on the fused model exported to ONNX (deploy/onnx_export.py)
and, for exploration (--variants): fused_cl (channels_last weights), torchscript_ofi (+
optimize_for_inference), segmenter_ofi / segmenter_jit / segmenter_static (C++ options),
onnxruntime_ref (ONNX Runtime on the reference form).

Algorithm:
  1. Build the preset's model (seeded random weights, or --checkpoint), the artifact per
     precision and, per shape and precision, the ONNX file.
  2. Count MACs per shape on the meta device (FlopCounterMode) and time a 2048³ matmul per
     precision: the machine's measured peak, to which achieved GFLOP/s are compared.
  3. Per (precision, shape, batch): warm every in-process variant up (its first call is also
     checked against the fp32 reference labels), then run `reps` rounds. A round calls each
     in-process variant once, in an order rotated every round; after every `burst` rounds each
     burst variant runs `burst` timed calls in a fresh process. With <= 3 iterations the tool's
     JSON (p50, p90 = max, mean) determines every sample, so all variants get the same
     per-call statistics.
  4. Per (variant, precision, shape) a probe subprocess measures construction time, first-call
     latency and peak RSS (VmHWM of that process; CUDA: max allocated).
  5. Write JSON, a markdown table and plots (scripts/plot_bench.py).

    .venv/bin/python scripts/bench_latency.py --quick
    .venv/bin/python scripts/bench_latency.py --shapes 512x1024,1024x2048 --reps 20,6
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every variant keeps its oneDNN primitives cached side by side (read when oneDNN first runs).
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8192")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from ifa_rt.bench import load_images, parse_shape, summarize, time_calls  # noqa: E402
from ifa_rt.deploy.export import ImageSegmenter  # noqa: E402
from ifa_rt.deploy.fuse import FusedIFA  # noqa: E402

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
SCHEMA = "ifa_rt.bench/1"
DEFAULT_VARIANTS = ("reference", "fused", "torchscript", "segmenter", "segmenter_proc",
                    "cpp_bench", "onnxruntime")
BURST_VARIANTS = ("cpp_bench", "segmenter_proc")  # timed in fresh subprocesses, in bursts
EXTRA_VARIANTS = ("fused_cl", "fused_proposed", "torchscript_ofi", "torchscript_proposed",
                  "segmenter_ofi", "segmenter_jit", "segmenter_static", "segmenter_proposed",
                  "segmenter_proposed_jit", "segmenter_proposed_static", "onnxruntime_ref")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MIB = 2.0**20


# ----------------------------------------------------------------------------- set-up


@dataclass
class Context:
    """Everything the variants are built from, shared by the main run and the probes."""

    preset: str
    device: str
    threads: int
    workdir: Path
    checkpoint: str | None = None
    ort_spinning: bool = False
    model: Any = None
    state_path: Path | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)
    onnx: dict[tuple, Path] = field(default_factory=dict)
    _fused: Any = None
    _meta: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> torch.nn.Module:
        """The reference model in eval mode: the checkpoint's weights or seeded random ones."""
        if self.model is None:
            from ifa_rt.model import build_model

            if self.checkpoint:
                from ifa_rt.deploy.checkpoint import load_checkpoint

                self.model = load_checkpoint(self.checkpoint, preset=self.preset)
            elif self.state_path is not None and self.state_path.is_file():
                self.model = build_model(self.preset, pretrained_backbone=False)
                self.model.load_state_dict(torch.load(self.state_path, weights_only=True))
            else:
                torch.manual_seed(0)
                self.model = build_model(self.preset, pretrained_backbone=False)
            self.model.eval()
        return self.model

    def fused(self) -> torch.nn.Module:
        """The exact fused form (IFA_SPEC §4) of the model, fp32 on the CPU, built once."""
        if self._fused is None:
            from ifa_rt.deploy.fuse import fuse_model

            self._fused = fuse_model(self.build_model())
        return self._fused

    def meta_models(self) -> dict[str, torch.nn.Module]:
        """Reference (BN folded) and fused models on the meta device, for counting MACs."""
        if not self._meta:
            from ifa_rt.deploy.fuse import fold_batchnorms

            reference = copy.deepcopy(self.build_model())
            # Folding changes no conv/matmul work, and BatchNorm on meta tensors runs slow
            # Python decompositions.
            fold_batchnorms(reference, torch.zeros(1, 3, 64, 64))
            self._meta = {"reference": reference.to("meta"),
                          "fused": copy.deepcopy(self.fused()).to("meta")}
        return self._meta

    def save_state(self) -> None:
        """Write the weights once, so probe subprocesses build the very same model."""
        self.state_path = self.workdir / "state.pt"
        torch.save(self.build_model().state_dict(), self.state_path)

    def artifact(self, form: str = "fused") -> Path:
        """The `.ifa.pt` artifact (fp32; runtimes cast it to their precision).

        form "proposed": the fused artifact with the changes this benchmark proposes for
        export.py (channels-last weights, labels by max(1).indices); see export_proposed.
        """
        if form not in self.artifacts:
            path = self.workdir / f"{self.preset}-{form}.ifa.pt"
            if form == "proposed":
                export_proposed(self.build_model(), path, preset=self.preset)
            else:
                from ifa_rt.deploy.export import export

                export(self.build_model(), path, preset=self.preset, form=form)
            self.artifacts[form] = path
        return self.artifacts[form]

    def onnx_file(self, shape: tuple[int, int], precision: str, form: str = "fused") -> Path:
        """The ONNX export for one input size (its geometry is baked in)."""
        key = (shape, precision, form)
        if key not in self.onnx:
            from ifa_rt.deploy.onnx_export import export_onnx

            path = self.workdir / f"{self.preset}-{form}-{shape[0]}x{shape[1]}-{precision}.onnx"
            export_onnx(self.build_model(), path, height=shape[0], width=shape[1],
                        precision=precision, form=form)
            self.onnx[key] = path
        return self.onnx[key]


class MaxIndicesSegmenter(ImageSegmenter):
    """The artifact's module with labels from max(1).indices: argmax(1)'s first maximum, faster."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Label map uint8 [B,H,W] for uint8 [B,H,W,3] RGB images."""
        return self._logits(images).max(1)[1].to(torch.uint8)


class RowGatherFusedIFA(FusedIFA):
    """FusedIFA with the first MLP layer summed in NHWC, one dim-0 row gather per level.

    `index_select` on dims 2 and 3 of an NCHW map copies single floats (27% of the frozen
    fp32 graph at 512×1024); on the rows of the [B·hh·ww, C] view of a channels-last map it
    copies whole C-vectors. Same indices, so the same values are summed; the logits go back
    to NCHW before the final upsample, whose channels-last kernel rounds differently.
    """

    def _first_layer(self, projected: list[torch.Tensor], h: int, w: int, vy: float,
                     vx: float) -> torch.Tensor:
        geo = self._geometry(projected, h, w, vy, vx, projected[0].dtype)
        key = f"nhwc:{h}x{w}:{vy},{vx}:{projected[0].dtype}:{projected[0].device}"
        for f in projected:
            key += f":{f.shape[2]}x{f.shape[3]}"
        if key not in self.cache:
            self.cache[key] = geo[0].permute(1, 2, 0).contiguous()  # [h, w, hidden]
            for i in range(4):
                iy, ix = geo[1 + 2 * i], geo[2 + 2 * i]
                rows = iy[:, None] * projected[i].shape[3] + ix[None, :]
                self.cache[key + f":rows{i}"] = rows.reshape(-1)
        b = projected[0].shape[0]
        z = self.cache[key].unsqueeze(0)
        for i in range(4):
            p = projected[i].permute(0, 2, 3, 1)  # [B, hh, ww, C]: a view when channels-last
            hh, ww, c = p.shape[1], p.shape[2], p.shape[3]
            if not (hh == h and ww == w and vy == 0.0 and vx == 0.0):
                rows = self.cache[key + f":rows{i}"]
                if b > 1:
                    offsets = torch.arange(b, device=rows.device)[:, None] * (hh * ww)
                    rows = (rows[None, :] + offsets).reshape(-1)
                p = p.reshape(b * hh * ww, c).index_select(0, rows).view(b, h, w, c)
            z = z + p
        return z.permute(0, 3, 1, 2)

    def _mlp_rest(self, z: torch.Tensor) -> torch.Tensor:
        for conv in self.mlp:
            z = conv(torch.relu(z))
        return z.contiguous()


def proposed_net(model: torch.nn.Module) -> torch.nn.Module:
    """The fused net with the proposed changes: NHWC row gathers, channels-last weights."""
    if model.training:
        raise ValueError("proposed_net: 'model': expected eval mode, got training mode")
    return RowGatherFusedIFA(model).to(memory_format=torch.channels_last)


def export_proposed(model: torch.nn.Module, path: Path, preset: str) -> None:
    """`export` with the three changes measured here (labels stay those of the fused form).

    1. channels-last conv weights: they stay so through torch.jit.save, load and freeze, and
       the input already is NHWC, so no convolution reorders its weights per call;
    2. labels by max(1).indices instead of argmax(1) (bit-identical, a faster kernel);
    3. the first MLP layer as RowGatherFusedIFA (NHWC, dim-0 row gathers).
    """
    from ifa_rt.deploy import export as exporter

    saved = exporter.ImageSegmenter, exporter._inference_net
    exporter.ImageSegmenter = MaxIndicesSegmenter
    exporter._inference_net = lambda net, form: proposed_net(net)
    try:
        exporter.export(model, path, preset=preset)
    finally:
        exporter.ImageSegmenter, exporter._inference_net = saved


def find_bench_tool() -> Path | None:
    """`ifa-rt-bench`: installed in the package (wheel), in the build tree, or on PATH."""
    import shutil

    import ifa_rt

    candidates = [Path(ifa_rt.__file__).parent / "bin" / "ifa-rt-bench",
                  REPO / "build" / sys.implementation.cache_tag / "cpp" / "ifa-rt-bench"]
    found = shutil.which("ifa-rt-bench")
    candidates += [Path(found)] if found else []
    return next((p for p in candidates if p.is_file() and os.access(p, os.X_OK)), None)


def snapshot_tool(tool: Path, workdir: Path) -> Path:
    """Copy the tool and its libifa_rt next to each other in `workdir`, for the whole run.

    The build tree is shared: a rebuild during a long run would otherwise swap the library
    under later bursts (or leave it half written). The copy's libraries win through
    LD_LIBRARY_PATH (searched before the tool's RUNPATH); see ToolBursts.env.
    """
    import shutil

    out = workdir / "tool"
    out.mkdir(exist_ok=True)
    for folder in (tool.parent, tool.parent.parent / "lib"):
        for lib in folder.glob("libifa_rt.so*"):
            shutil.copy2(lib.resolve(), out / lib.name)
    shutil.copy2(tool, out / tool.name)
    return out / tool.name


# ----------------------------------------------------------------------------- variants


class Runner:
    """One in-process variant: numpy uint8 [B,H,W,3] -> numpy uint8 labels [B,H,W]."""

    info: dict[str, Any]

    def __call__(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchRunner(Runner):
    """An eager or TorchScript module whose `forward` is the artifact's (uint8 in, labels out)."""

    def __init__(self, module: Any, device: str, info: dict[str, Any]) -> None:
        self.module, self.device, self.info = module, torch.device(device), info

    def __call__(self, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(images).to(self.device)
            return self.module(x).cpu().numpy()


class SegmenterRunner(Runner):
    """`ifa_rt.Segmenter` planned for one shape and batches up to max_batch."""

    def __init__(self, path: Path, ctx: Context, precision: str, shape, max_batch: int,
                 **options: Any) -> None:
        from ifa_rt import Segmenter

        self.seg = Segmenter(str(path), device=ctx.device, precision=precision,
                             max_batch=max_batch, shapes=[shape], threads=ctx.threads, **options)
        stats = self.seg.stats()
        self.info = {"runtime": self.seg.plan["runtime"],
                     "construction_ms": stats["construction_ms"],
                     "warmup_first_call_ms": stats["first_call_ms"]}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.seg(images)


class OrtRunner(Runner):
    """ONNX Runtime session on the exported model (labels output)."""

    def __init__(self, path: Path, ctx: Context) -> None:
        from ifa_rt.deploy.onnx_export import onnx_session

        self.session = onnx_session(path, threads=ctx.threads, device=ctx.device,
                                    spinning=ctx.ort_spinning)
        self.name = self.session.get_inputs()[0].name
        self.info = {"providers": self.session.get_providers(), "spinning": ctx.ort_spinning}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: images})[0]


def make_runner(name: str, ctx: Context, precision: str, shape, max_batch: int) -> Runner:
    """Build one in-process variant for a precision and shape (any batch up to max_batch)."""
    from ifa_rt.deploy.export import ImageSegmenter
    from ifa_rt.deploy.metadata import DEFAULT_MEAN, DEFAULT_STD

    dtype = DTYPES[precision]
    if name == "fused_proposed":
        net = proposed_net(ctx.build_model())
        module = MaxIndicesSegmenter(net, DEFAULT_MEAN, DEFAULT_STD).eval().to(ctx.device, dtype)
        return TorchRunner(module, ctx.device, {"form": "proposed"})
    if name in ("reference", "fused", "fused_cl"):
        net = copy.deepcopy(ctx.build_model() if name == "reference" else ctx.fused())
        module = ImageSegmenter(net, DEFAULT_MEAN, DEFAULT_STD).eval().to(ctx.device, dtype)
        if name == "fused_cl":
            module = module.to(memory_format=torch.channels_last)
        form = "reference" if name == "reference" else "fused"
        return TorchRunner(module, ctx.device, {"form": form})
    if name.startswith("torchscript"):
        form = "proposed" if name.endswith("proposed") else "fused"
        with warnings.catch_warnings():
            # TorchScript is deprecated in torch 2.13 but is this project's artifact format.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(ctx.artifact(form)), map_location=ctx.device)
            if precision != "fp32":
                module.to(dtype)
            module = torch.jit.freeze(module.eval())
            if name == "torchscript_ofi":
                module = torch.jit.optimize_for_inference(module)
        return TorchRunner(module, ctx.device, {"artifact": form, "freeze": True,
                                                "optimize": name.endswith("ofi")})
    if name.startswith("segmenter"):
        # Suffixes pin the C++ CPU runtime; none keeps its default. (static + optimize crashed.)
        options = {"ofi": {"optimize": True, "runtime": "jit"},
                   "jit": {"optimize": False, "runtime": "jit"},
                   "static": {"optimize": False, "runtime": "static"}}.get(name.split("_")[-1], {})
        form = "proposed" if "proposed" in name else "fused"
        return SegmenterRunner(ctx.artifact(form), ctx, precision, shape, max_batch, **options)
    if name in ("onnxruntime", "onnxruntime_ref"):
        if precision == "bf16":
            raise SkipVariant("ONNX Runtime has no bf16 convolution kernels")
        if precision == "fp16" and not ctx.device.startswith("cuda"):
            raise SkipVariant("ONNX Runtime's CPU provider has no fp16 convolution kernels")
        form = "reference" if name == "onnxruntime_ref" else "fused"
        return OrtRunner(ctx.onnx_file(shape, precision, form), ctx)
    raise ValueError(f"bench_latency: 'variant': expected one of "
                     f"{list(DEFAULT_VARIANTS + EXTRA_VARIANTS)}, got {name!r}")


class SkipVariant(Exception):
    """A variant that cannot run in this configuration (recorded with its reason)."""


class Bursts:
    """A variant timed in short bursts of fresh subprocesses, between in-process rounds."""

    name = ""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.bursts: list[dict[str, Any]] = []

    def run(self, iters: int) -> None:
        """One subprocess with `iters` timed calls; appends its samples."""
        raise NotImplementedError


class ToolBursts(Bursts):
    """`ifa-rt-bench` in bursts of <= 3 calls: its JSON then gives back every sample."""

    name = "cpp_bench"

    def __init__(self, tool: Path, ctx: Context, precision: str, shape, batch: int) -> None:
        super().__init__()
        self.cmd = [str(tool), str(ctx.artifact()), "--shapes", f"{shape[0]}x{shape[1]}",
                    "--max-batch", str(batch), "--batches", str(batch), "--device", ctx.device,
                    "--precision", precision, "--threads", str(ctx.threads)]
        self.json = ctx.workdir / "tool.json"
        self.env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(
            [str(tool.parent), os.environ.get("LD_LIBRARY_PATH", "")])}

    def run(self, iters: int) -> None:
        """One `ifa-rt-bench` process with `iters` (1..3) timed calls."""
        if not 1 <= iters <= 3:
            raise ValueError(f"ToolBursts.run: 'iters': expected 1..3, got {iters}")
        proc = subprocess.run(self.cmd + ["--iters", str(iters), "--json", str(self.json)],
                              capture_output=True, text=True, env=self.env)
        if proc.returncode != 0:
            raise RuntimeError(f"ifa-rt-bench failed ({proc.returncode}): {proc.stderr.strip()}")
        report = json.loads(self.json.read_text())
        rec = report["results"][0]
        self.samples += burst_samples(rec["iters"], rec["p50_ms"], rec["p90_ms"], rec["mean_ms"])
        self.bursts.append({k: report[k] for k in ("runtime", "construction_ms", "first_call_ms",
                                                   "allocations_after_warmup", "fallback_calls")})


class SegmenterBursts(Bursts):
    """`Segmenter` alone in a fresh Python process per burst: isolated like the tool, so the
    two differ only by the binding (the in-process variant also shares its process)."""

    name = "segmenter_proc"

    def __init__(self, ctx: Context, precision: str, shape, batch: int) -> None:
        super().__init__()
        self.spec = {"artifact": str(ctx.artifact()), "device": ctx.device,
                     "precision": precision, "shape": list(shape), "batch": batch,
                     "threads": ctx.threads}

    def run(self, iters: int) -> None:
        """One Python process: construct the Segmenter, time `iters` calls on real images."""
        spec = json.dumps({**self.spec, "iters": iters})
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--segmenter-burst",
                               spec], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"segmenter burst failed ({proc.returncode}): "
                               f"{proc.stderr.strip()[-800:]}")
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        self.samples += report.pop("ms")
        self.bursts.append(report)


def segmenter_burst(spec: dict[str, Any]) -> dict[str, Any]:
    """Inside a fresh process (--segmenter-burst): a Segmenter's timed calls, as JSON."""
    from ifa_rt import Segmenter

    shape, batch = tuple(spec["shape"]), spec["batch"]
    images, _ = load_images(shape, batch)
    seg = Segmenter(spec["artifact"], device=spec["device"], precision=spec["precision"],
                    max_batch=batch, shapes=[shape], threads=spec["threads"])
    ms = time_calls(seg, images, spec["iters"])
    stats = seg.stats()
    return {"ms": ms, "runtime": seg.plan["runtime"], "construction_ms": stats["construction_ms"],
            "first_call_ms": stats["first_call_ms"]}


def burst_samples(iters: int, p50: float, p90: float, mean: float) -> list[float]:
    """Every sample of a <= 3-call burst from the tool's nearest-rank p50, p90 (= max) and mean."""
    if iters == 1:
        return [p50]
    if iters == 2:  # p50 is sorted[1] (round half up), the max
        return [2 * mean - p50, p50]
    return [3 * mean - p50 - p90, p50, p90]


# ----------------------------------------------------------------------------- measurements


def sync_fn(device: str):
    """The device synchronisation to call before stopping a timer (None on CPU)."""
    return torch.cuda.synchronize if device.startswith("cuda") else None


def matmul_peak(device: str, precision: str, n: int = 2048, reps: int = 5) -> float:
    """Measured GFLOP/s of an n³ matmul (median of reps, after 2 warm-up calls)."""
    a = torch.randn(n, n, device=device).to(DTYPES[precision])
    b = torch.randn(n, n, device=device).to(DTYPES[precision])
    ms = time_calls(lambda _: torch.mm(a, b), None, reps, sync=sync_fn(device), warmup=2)
    return 2 * n**3 / (sorted(ms)[len(ms) // 2] * 1e-3) / 1e9


def count_macs(ctx: Context, shape) -> dict[str, float]:
    """G MACs per image (conv + matmul) of the reference and fused graphs, on the meta device.

    The fused model runs twice: its per-shape geometry (a cached matmul) is not per-call work.
    """
    from torch.utils.flop_counter import FlopCounterMode

    out = {}
    for form, net in ctx.meta_models().items():
        x = torch.empty(1, 3, *shape, device="meta")
        with torch.no_grad():
            net(x)
            with FlopCounterMode(display=False) as counter:
                net(x)
        out[form] = counter.get_total_flops() / 2e9
    return out


def rss_mib() -> float:
    """This process's resident set size now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB


def probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Inside a fresh process: build one variant, time its first and second call (--probe)."""
    ctx = Context(spec["preset"], spec["device"], spec["threads"], Path(spec["workdir"]),
                  checkpoint=spec.get("checkpoint"), ort_spinning=spec.get("ort_spinning", False),
                  state_path=Path(spec["state"]) if spec.get("state") else None)
    ctx.artifacts = {form: Path(path) for form, path in spec["artifacts"].items()}
    shape, batch, precision = tuple(spec["shape"]), spec["batch"], spec["precision"]
    if spec.get("onnx"):
        ctx.onnx = {(shape, precision, spec.get("onnx_form", "fused")): Path(spec["onnx"])}
    torch.set_num_threads(ctx.threads)
    import ifa_rt  # noqa: F401  (the runtime's libraries count in the baseline)

    if spec["variant"].startswith("onnxruntime"):
        import onnxruntime  # noqa: F401
    images, _ = load_images(shape, batch)
    baseline = rss_mib()
    t0 = time.perf_counter()
    runner = make_runner(spec["variant"], ctx, precision, shape, batch)
    setup_s = time.perf_counter() - t0
    sync = sync_fn(ctx.device)
    first, second = time_calls(runner, images, 2, sync=sync)
    out = {"baseline_rss_mib": baseline, "setup_s": setup_s, "first_call_ms": first,
           "second_call_ms": second, "peak_rss_mib": peak_rss_mib()}
    if ctx.device.startswith("cuda"):
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / MIB
    return out


def peak_rss_mib() -> float:
    """This process's peak RSS since exec (VmHWM; ru_maxrss would include the parent's at fork)."""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024.0


# ru_maxrss of the launcher's children: the tool only (the launcher itself is ~10 MiB, and a
# child's ru_maxrss starts from its parent's peak at fork, so the big benchmark must not fork it).
_LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")


def run_probe(spec: dict[str, Any], tool: Path | None) -> dict[str, Any]:
    """Run one probe in a fresh process; return its timings and peak RSS."""
    t0 = time.perf_counter()
    env = None
    if spec["variant"] == "cpp_bench":
        out_json = Path(spec["workdir"]) / "probe-tool.json"
        bursts = ToolBursts(tool, _probe_ctx(spec), spec["precision"], spec["shape"], spec["batch"])
        env = bursts.env
        cmd = [sys.executable, "-S", "-c", _LAUNCHER, *bursts.cmd, "--iters", "2", "--json",
               str(out_json)]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"probe {spec['variant']} failed: {proc.stderr.strip()[-800:]}")
    last = proc.stdout.strip().splitlines()[-1]
    if spec["variant"] != "cpp_bench":
        return {**json.loads(last), "wall_s": time.perf_counter() - t0}
    report = json.loads(out_json.read_text())
    return {"baseline_rss_mib": 0.0, "setup_s": report["construction_ms"] / 1e3,
            "first_call_ms": report["first_call_ms"], "first_call_note": "the warm-up's first call",
            "second_call_ms": report["results"][0]["p50_ms"], "peak_rss_mib": int(last) / 1024.0,
            "wall_s": time.perf_counter() - t0}


def _probe_ctx(spec: dict[str, Any]) -> Context:
    ctx = Context(spec["preset"], spec["device"], spec["threads"], Path(spec["workdir"]))
    ctx.artifacts = {form: Path(path) for form, path in spec["artifacts"].items()}
    return ctx


# Op-name fragments -> the group a profile reports them under (first match wins).
OP_GROUPS = (("convolution", ("conv", "mkldnn_convolution", "MKLDNNConv")),
             ("matmul", ("addmm", "matmul", "linear", "::mm", "bmm")),
             ("upsample", ("upsample",)),
             ("argmax/max", ("argmax", "::max")),
             ("gather", ("index_select", "gather", "index")),
             ("copy/layout", ("copy_", "::to", "contiguous", "clone", "to_dense", "to_mkldnn",
                              "reorder", "permute", "empty")),
             ("elementwise", ("add", "mul", "sub", "relu", "clamp", "hardtanh", "div")))


def profile_ops(runner: Runner, images: np.ndarray, top: int = 15) -> dict[str, Any]:
    """Self CPU time per op over one call (torch.profiler): the `top` biggest and per group."""
    from torch.profiler import ProfilerActivity, profile

    runner(images)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        runner(images)
        wall = (time.perf_counter() - t0) * 1e3
    events = [(e.key, e.self_cpu_time_total / 1e3, e.count) for e in prof.key_averages()]
    events = sorted((e for e in events if e[1] > 0), key=lambda e: -e[1])
    total = sum(e[1] for e in events) or 1.0
    groups: dict[str, float] = {}
    for key, ms, _ in events:
        name = next((g for g, frags in OP_GROUPS if any(f in key for f in frags)), "other")
        groups[name] = groups.get(name, 0.0) + ms
    return {"wall_ms": wall, "self_total_ms": total,
            "groups_pct": {g: 100 * ms / total for g, ms in sorted(groups.items(),
                                                                  key=lambda kv: -kv[1])},
            "ops": [{"op": k, "self_ms": ms, "pct": 100 * ms / total, "calls": n}
                    for k, ms, n in events[:top]]}


def tail_costs(ctx: Context, shape, batch: int, precision: str, reps: int = 5) -> dict[str, Any]:
    """Cost of the final full-resolution bilinear upsample + argmax, and exact cheaper forms.

    `max(1).indices` returns the first maximal index, like `argmax(1)`: the same labels, bit
    for bit, from a faster reduction kernel. The channels-last upsample is not bit-identical.
    """
    import torch.nn.functional as F

    with torch.no_grad():
        low = torch.empty(batch, 3, *shape, device="meta")
        net = ctx.meta_models()["fused"]
        feats = net._neck(net.encoder(low))
    num_classes = net.mlp[-1].out_channels
    logits = torch.randn(batch, num_classes, *feats[0].shape[2:]).to(ctx.device, DTYPES[precision])
    size = list(shape)

    def up(x):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    forms = {"upsample + argmax(1) (the graph)": lambda x: up(x).argmax(1).to(torch.uint8),
             "upsample + max(1).indices": lambda x: up(x).max(1).indices.to(torch.uint8),
             "upsample only": up,
             "argmax(1) only, at low resolution": lambda x: x.argmax(1)}
    sync = sync_fn(ctx.device)
    out = {"logits_shape": list(logits.shape)}
    with torch.inference_mode():
        same = torch.equal(forms["upsample + argmax(1) (the graph)"](logits),
                           forms["upsample + max(1).indices"](logits))
        for name, fn in forms.items():
            ms = time_calls(fn, logits, reps, sync=sync, warmup=1)
            out[name] = sorted(ms)[len(ms) // 2]
    out["max_indices_identical"] = same
    return out


# ----------------------------------------------------------------------------- the run


def host_info() -> dict[str, Any]:
    """CPU model and the ISA flags that matter here, library versions, core count."""
    flags, model = set(), platform.processor()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16",
              "amx_tile")
    info = {"cpu": model, "cores": os.cpu_count(), "isa": [f for f in wanted if f in flags],
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": sysconfig.get_platform()}
    with contextlib.suppress(ImportError):
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    import ifa_rt

    info["ifa_rt"] = ifa_rt.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def loadavg() -> list[float]:
    """The 1/5/15-minute load averages (the machine is shared: recorded with every run)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def training_running() -> bool:
    """Whether a training job (`ifa_rt.train`) shares the machine right now."""
    return subprocess.run(["pgrep", "-f", "ifa_rt.train"], capture_output=True).returncode == 0


def _per_shape(text: str, n: int, what: str) -> list[int]:
    values = [int(v) for v in str(text).split(",")]
    if len(values) == 1:
        values *= n
    if len(values) != n or min(values) < 1:
        raise ValueError(f"bench_latency: '{what}': expected one value or one per shape ({n}), "
                         f"all >= 1, got {text!r}")
    return values


def measure_cell(runners: dict[str, Runner], bursts: list[Bursts], images: np.ndarray,
                 reps: int, warmup: int, burst: int, sync, bar,
                 failed: dict[str, tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Interleaved timings of every variant on one input batch (step 3 of the module doc).

    A variant whose first call (or burst) raises is moved to `failed`.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, runner in list(runners.items()):
        t0 = time.perf_counter()
        try:
            labels = runner(images)
        except Exception as exc:  # e.g. a dtype a kernel lacks: recorded, the others go on
            failed[name] = ("error", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            del runners[name]
            continue
        if sync is not None:
            sync()
        out[name] = {"first_call_in_run_ms": (time.perf_counter() - t0) * 1e3,
                     "labels": labels, "ms": []}
        # The TorchScript profiling executor optimises the graph over its first two calls.
        extra = max(warmup, 2) if name.startswith("torchscript") else warmup
        time_calls(runner, images, 0, sync=sync, warmup=max(extra - 1, 0))
    names = list(runners)
    bursts = list(bursts)
    done = 0
    for r in range(reps):
        k = r % max(len(names), 1)
        for name in names[k:] + names[:k]:
            out[name]["ms"] += time_calls(runners[name], images, 1, sync=sync)
            bar.update(1)
        due = min(burst, reps - done)
        if not (bursts and due and ((r + 1) % burst == 0 or r == reps - 1)):
            continue
        order = bursts if (r // burst) % 2 == 0 else bursts[::-1]
        for b in order:
            try:
                b.run(due)
            except RuntimeError as exc:  # recorded; the others go on
                failed[b.name] = ("error", str(exc).splitlines()[0])
                bursts.remove(b)
                continue
            bar.update(due)
        done += due
    for b in bursts:
        out[b.name] = {"ms": b.samples, "first_call_in_run_ms": None, "labels": None,
                       "bursts": b.bursts}
    return out


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The whole benchmark (artifacts and ONNX files go to `workdir`); the JSON-ready result."""
    from tqdm import tqdm

    shapes = [parse_shape(s) for s in args.shapes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    reps = _per_shape(args.reps, len(shapes), "reps")
    precisions = sorted(args.precision.split(","), key=lambda p: p != "fp32")  # fp32 first
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in DEFAULT_VARIANTS + EXTRA_VARIANTS]
    if unknown or any(p not in DTYPES for p in precisions) or not 1 <= args.burst <= 3:
        raise ValueError(f"bench_latency: bad --variants {unknown}, --precision {precisions} "
                         f"or --burst {args.burst} (1..3)")
    torch.set_num_threads(args.threads)
    ctx = Context(args.preset, args.device, args.threads, workdir, checkpoint=args.checkpoint,
                  ort_spinning=args.ort_spinning)
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "command": " ".join(shlex.quote(a) for a in ["scripts/bench_latency.py", *args.argv]),
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": host_info(),
        "loadavg_start": loadavg(),
        "training_running": training_running(),
        "config": {"preset": args.preset, "checkpoint": args.checkpoint, "device": args.device,
                   "precisions": precisions, "shapes": [list(s) for s in shapes],
                   "batches": batches, "reps": reps, "warmup": args.warmup,
                   "threads": args.threads, "variants": variants, "burst": args.burst,
                   "ort_spinning": args.ort_spinning,
                   "onednn_primitive_cache": os.environ.get("ONEDNN_PRIMITIVE_CACHE_CAPACITY")},
    }
    t_setup = time.perf_counter()
    ctx.build_model()
    ctx.save_state()
    ctx.artifact()
    tool = find_bench_tool() if "cpp_bench" in variants else None
    if "cpp_bench" in variants and tool is None:
        raise FileNotFoundError("bench_latency: 'cpp_bench': ifa-rt-bench not found (build it)")
    result["tool"] = str(tool) if tool else None
    tool = snapshot_tool(tool, workdir) if tool else None
    result["matmul_peak_gflops"] = {p: matmul_peak(args.device, p) for p in precisions}
    macs = {f"{h}x{w}": count_macs(ctx, (h, w)) for h, w in shapes}
    result["gmacs_per_image"] = macs
    result["setup_s"] = time.perf_counter() - t_setup

    records, probes = [], []
    total = sum(len(variants) * n for n in reps) * len(batches) * len(precisions)
    bar = tqdm(total=total, desc="bench", unit="call", dynamic_ncols=True)
    # The fp32 reference eager model is the baseline of every precision (ANCHORS.md).
    reference_labels: dict[tuple, np.ndarray] = {}
    reference_p50: dict[tuple, float] = {}
    sync = sync_fn(args.device)
    for precision in precisions:
        for shape, n_reps in zip(shapes, reps, strict=True):
            bar.set_postfix_str(f"{precision} {shape[0]}x{shape[1]}: building")
            runners, failed = {}, {}
            for name in variants:
                if name in BURST_VARIANTS:
                    continue
                try:
                    runners[name] = make_runner(name, ctx, precision, shape, max(batches))
                except SkipVariant as exc:
                    failed[name] = ("skipped", str(exc))
                except Exception as exc:  # recorded, so one broken variant does not end the run
                    failed[name] = ("error", f"{type(exc).__name__}: {exc}")
                    traceback.print_exc()
            for batch in batches:
                bar.set_postfix_str(f"{precision} {batch}x{shape[0]}x{shape[1]}")
                images, source = load_images(shape, batch)
                key = (shape, batch)
                bursts: list[Bursts] = []
                if "cpp_bench" in variants and tool is not None:
                    bursts.append(ToolBursts(tool, ctx, precision, shape, batch))
                if "segmenter_proc" in variants:
                    bursts.append(SegmenterBursts(ctx, precision, shape, batch))
                cell_failed = dict(failed)
                cell = measure_cell(runners, bursts, images, n_reps, args.warmup, args.burst,
                                    sync, bar, cell_failed)
                # A runner that failed stays failed for the shape; the tool retries per batch.
                failed.update({k: v for k, v in cell_failed.items() if k not in BURST_VARIANTS})
                if precision == "fp32" and key not in reference_labels:
                    ref = cell.get("reference") or next(iter(cell.values()), None)
                    if ref is not None and ref["labels"] is not None:
                        reference_labels[key] = ref["labels"]
                    if cell.get("reference"):
                        reference_p50[key] = summarize(cell["reference"]["ms"], batch)["p50_ms"]
                records += cell_records(cell, cell_failed, precision, shape, batch, source,
                                        macs[f"{shape[0]}x{shape[1]}"],
                                        result["matmul_peak_gflops"][precision],
                                        reference_labels.get(key), reference_p50.get(key), runners)
            del runners
            if args.probe and (not args.quick or shape == shapes[-1]):  # quick: largest only
                for name in variants:
                    if name in failed or name == "segmenter_proc":  # its probe is segmenter's
                        continue
                    bar.set_postfix_str(f"{precision} {shape[0]}x{shape[1]}: probe {name}")
                    probes.append(probe_record(ctx, args, name, precision, shape, batches[0], tool))
    bar.close()
    merge_probes(records, probes)
    if args.profile:
        result["profiles"] = run_profiles(ctx, args, shapes[-1], precisions)
    result.update(results=records, probes=probes, loadavg_end=loadavg(),
                  training_running_end=training_running())
    return result


def run_profiles(ctx: Context, args, shape, precisions) -> dict[str, Any]:
    """Op profiles of the --profile variants and the upsample + argmax tail, at batch 1."""
    images, _ = load_images(shape, 1)
    out: dict[str, Any] = {"shape": list(shape), "variants": {}, "tail": {}}
    for precision in precisions:
        out["tail"][precision] = tail_costs(ctx, shape, 1, precision)
        for name in args.profile.split(","):
            try:
                runner = make_runner(name, ctx, precision, shape, 1)
                time_calls(runner, images, 0, warmup=2)
                out["variants"][f"{name} {precision}"] = profile_ops(runner, images)
            except Exception as exc:  # recorded: a profile is an extra, not the measurement
                out["variants"][f"{name} {precision}"] = {"error": f"{type(exc).__name__}: {exc}"}
            finally:
                runner = None
    return out


def cell_records(cell, failed, precision, shape, batch, source, macs, peak, ref_labels, ref_p50,
                 runners):
    """One JSON record per variant for one (precision, shape, batch)."""
    base = {"precision": precision, "batch": batch, "height": shape[0], "width": shape[1]}
    records = []
    for name, data in cell.items():
        stats = summarize(data["ms"], batch)
        form = "reference" if name in ("reference", "onnxruntime_ref") else "fused"
        gflops = 2 * macs[form] * batch / (stats["p50_ms"] * 1e-3)
        rec = {"variant": name, **base, "status": "ok", "inputs": source, **stats,
               "speedup_vs_reference": ref_p50 / stats["p50_ms"] if ref_p50 else None,  # fp32
               "gmacs": macs[form] * batch, "gflops_per_s": gflops,
               "peak_fraction": gflops / peak if peak else None,
               "first_call_in_run_ms": data["first_call_in_run_ms"],
               "label_agreement_vs_fp32_reference": None,
               "ms": [round(x, 3) for x in data["ms"]]}
        if data["labels"] is not None and ref_labels is not None:
            rec["label_agreement_vs_fp32_reference"] = float((data["labels"] == ref_labels).mean())
        if name in runners:
            rec["info"] = runners[name].info
        if name in BURST_VARIANTS:
            rec["info"] = {"bursts": data["bursts"]}
        if name == "cpp_bench":
            rec["inputs"] = "random (the tool makes its own)"
        records.append(rec)
    for name, (status, why) in failed.items():
        records.append({"variant": name, **base, "status": status, "reason": why})
    return records


def probe_record(ctx, args, name, precision, shape, batch, tool) -> dict[str, Any]:
    """One probe subprocess for a variant, as a JSON record (errors recorded, not raised)."""
    spec = {"variant": name, "precision": precision, "shape": list(shape), "batch": batch,
            "preset": ctx.preset, "device": ctx.device, "threads": ctx.threads,
            "workdir": str(ctx.workdir), "state": str(ctx.state_path),
            "artifacts": {form: str(ctx.artifact(form)) for form in
                          ("fused", "proposed") if form == "fused" or name.endswith("proposed")},
            "checkpoint": ctx.checkpoint,
            "ort_spinning": ctx.ort_spinning}
    if name.startswith("onnxruntime"):
        form = "reference" if name == "onnxruntime_ref" else "fused"
        spec.update(onnx=str(ctx.onnx_file(shape, precision, form)), onnx_form=form)
    base = {"variant": name, "precision": precision, "batch": batch, "height": shape[0],
            "width": shape[1]}
    try:
        return {**base, "status": "ok", **run_probe(spec, tool)}
    except Exception as exc:  # a failed probe is a recorded fact, not the end of the run
        return {**base, "status": "error", "reason": str(exc)}


def merge_probes(records: list[dict], probes: list[dict]) -> None:
    """Copy each probe's memory and first-call numbers onto the matching timing record."""
    for p in probes:
        if p["status"] != "ok":
            continue
        for r in records:
            if r["status"] == "ok" and all(r[k] == p[k] for k in
                                           ("variant", "precision", "batch", "height", "width")):
                r["peak_rss_mib"] = p["peak_rss_mib"]
                r["first_call_ms"] = p["first_call_ms"]
                r["first_over_p50"] = p["first_call_ms"] / r["p50_ms"]
                r["setup_s"] = p["setup_s"]
                if "cuda_max_allocated_mib" in p:
                    r["cuda_max_allocated_mib"] = p["cuda_max_allocated_mib"]


# ----------------------------------------------------------------------------- command line


QUICK = {"shapes": "360x480,512x1024", "batches": "1", "reps": "5"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="cityscapes-r50", help="model preset (default: the paper's)")
    p.add_argument("--checkpoint", help="weights (default: seeded random weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", help="comma list of fp32, fp16, bf16")
    p.add_argument("--shapes", default="512x1024,1024x2048", help="comma list of HxW")
    p.add_argument("--batches", default="1", help="comma list, e.g. 1,2,4,8")
    p.add_argument("--reps", default="20,6", help="timed rounds: one value or one per shape")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per variant (TS: >= 2)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads of every variant")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma list; extra: {','.join(EXTRA_VARIANTS)}")
    p.add_argument("--burst", type=int, default=3, help="ifa-rt-bench calls per subprocess (1..3)")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip the per-variant subprocesses (peak RSS, first call)")
    p.add_argument("--ort-spinning", action="store_true",
                   help="let ONNX Runtime threads busy-wait between runs (off: fair interleaving)")
    p.add_argument("--quick", action="store_true",
                   help="360x480 + 512x1024, batch 1, 5 rounds, probes at 512x1024 only "
                        "(under 5 minutes on 2 cores)")
    p.add_argument("--out", help="output prefix (default docs/bench/<preset>-<device>[-quick])")
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--profile", nargs="?", const="torchscript,segmenter", default=None,
                   help="after timing, profile these variants' ops (torch.profiler) at the "
                        "last shape, batch 1, and time the upsample + argmax tail")
    p.add_argument("--probe", dest="probe_spec", help=argparse.SUPPRESS)
    p.add_argument("--segmenter-burst", dest="segmenter_burst", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.quick:
        for key, value in QUICK.items():
            if getattr(args, key) == p.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with the hidden --probe, one probe) and write its outputs."""
    args = parse_args(argv)
    if args.probe_spec:
        print(json.dumps(probe(json.loads(args.probe_spec))))
        return 0
    if args.segmenter_burst:
        print(json.dumps(segmenter_burst(json.loads(args.segmenter_burst))))
        return 0
    sys.path.insert(0, str(SCRIPTS))
    import plot_bench

    with tempfile.TemporaryDirectory(prefix="ifa-rt-bench-") as tmp:
        result = run(args, Path(tmp))
    suffix = "-quick" if args.quick else ""
    prefix = Path(args.out or REPO / "docs" / "bench" / f"{args.preset}-{args.device}{suffix}")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    json_path = prefix.with_name(prefix.name + ".json")
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    table = plot_bench.markdown(result)
    prefix.with_name(prefix.name + ".md").write_text(table)
    print(table)
    if args.plot:
        for path in plot_bench.plot(result, prefix):
            print(f"wrote {path}")
    print(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
