"""Shared helpers of the reliability tests (docs/reliability.md): artifacts and references.

The fixture artifacts are built once per process (not per test module), since scripting them
is the slowest part of these tests on a loaded 2-core machine.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parent / "fixtures"


def _load_script(name: str):
    """Import tests/fixtures/<name>.py as a module (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, FIXTURES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def fixture_dir() -> Path:
    """tiny.ifa.pt, its references and broken artifacts, plus bad/ (make_bad_artifacts.py)."""
    out = Path(tempfile.mkdtemp(prefix="ifa_rt_reliability_"))
    atexit.register(shutil.rmtree, out, True)
    assert _load_script("make_fixtures").main([str(out)]) == 0
    assert _load_script("make_bad_artifacts").main([str(out / "bad")]) == 0
    return out


@functools.cache
def _torchscript(path: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(path).eval()


def reference(path: Path, images) -> np.ndarray:
    """Labels of TorchScript run from Python, one image per call, stacked [N,H,W]."""
    module = _torchscript(str(path))
    with torch.inference_mode():
        out = [module(torch.from_numpy(np.ascontiguousarray(im))[None])[0] for im in images]
    return np.stack([o.numpy() for o in out])


def reference_logits(path: Path, images) -> np.ndarray:
    """float32 logits of TorchScript run from Python, one image per call, [N,C,H,W]."""
    module = _torchscript(str(path))
    with torch.inference_mode():
        x = [torch.from_numpy(np.ascontiguousarray(im))[None] for im in images]
        return np.stack([module.logits(t)[0].numpy() for t in x])


def rand_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """n random uint8 RGB images [n,h,w,3]."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def assert_logits_close(got: np.ndarray, want: np.ndarray) -> None:
    """The fp32 contract of docs/design.md: max |Δlogit| <= 1e-4 of the logit scale."""
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= 1e-4 * scale


def run_threads(target, count: int, deadline_s: float) -> None:
    """Run target(0..count-1) on threads; fail (not hang) if any is alive after deadline_s."""
    threads = [threading.Thread(target=target, args=(t,), daemon=True) for t in range(count)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline_s - (time.monotonic() - start)))
    alive = sum(t.is_alive() for t in threads)
    assert alive == 0, f"{alive} threads still running after {deadline_s} s: deadlock?"
