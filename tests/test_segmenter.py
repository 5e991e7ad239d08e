# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""ifa_rt.Segmenter / SegmenterPool: the C++ runtime against TorchScript run from Python.

Artifacts are made at test time: the real exporter (ifa_rt.export) on a small IFA config, and
the contract-exact tiny module of tests/fixtures/make_fixtures.py (fast; also writes the broken
artifacts for the error tests).
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import ifa_rt
from ifa_rt import Segmenter, SegmenterPool

FIXTURE_SCRIPT = Path(__file__).parent / "fixtures" / "make_fixtures.py"


def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory) -> Path:
    """tiny.ifa.pt, reference data and the broken artifacts."""
    out = tmp_path_factory.mktemp("fixtures")
    assert _load_fixture_module().main([str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def tiny(fixtures) -> Path:
    return fixtures / "tiny.ifa.pt"


@pytest.fixture(scope="session")
def real(tmp_path_factory) -> Path:
    """A real artifact from ifa_rt.export: a small IFA (ResNet-18, thin neck and MLP)."""
    path = tmp_path_factory.mktemp("real") / "mini.ifa.pt"
    model = ifa_rt.build_model("camvid-r18", neck_channels=16, mlp_hidden=(32, 16)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ifa_rt.export(model, path)
    return path


def torchscript(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path)).eval()


def reference(path: Path, images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Labels and logits of TorchScript from Python, one image per call."""
    module = torchscript(path)
    labels, logits = [], []
    with torch.inference_mode():
        for im in images:
            x = torch.from_numpy(np.ascontiguousarray(im))[None]
            labels.append(module(x)[0].numpy())
            logits.append(module.logits(x)[0].numpy())
    return labels, logits


def rand_images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def assert_logits_close(got: np.ndarray, want: np.ndarray) -> None:
    scale = float(np.abs(want).max())
    assert float(np.abs(got - want).max()) <= 1e-4 * scale


# --- correctness ---------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["static", "jit"])
def test_tiny_matches_torchscript_across_buckets_splits_and_odd_sizes(tiny, runtime):
    seg = Segmenter(
        tiny,
        shapes=[(32, 48)],
        max_batch=4,
        runtime=runtime,
        plan_logits=True,
        batch_invariant=False,
    )
    batch = rand_images(7, 32, 48, seed=1)  # 4 + 2 + 1 (CPU splits, never pads)
    odd = rand_images(3, 37, 53, seed=2)  # unplanned: fallback path
    want, want_logits = reference(tiny, list(batch) + list(odd))
    np.testing.assert_array_equal(seg(batch), np.stack(want[:7]))
    np.testing.assert_array_equal(seg(odd), np.stack(want[7:]))
    assert_logits_close(seg.logits(batch), np.stack(want_logits[:7]))
    assert_logits_close(seg.logits(odd), np.stack(want_logits[7:]))
    stats = seg.stats()
    assert stats["fallback_calls"] == 2 and stats["padded_images"] == 0
    assert stats["bucket_runs"] == 6  # (4 + 2 + 1) for labels, and again for logits
    assert seg.options.runtime == runtime


@pytest.mark.slow
def test_real_export_matches_torchscript(real, real_image):
    image = real_image(0, size=(64, 96))  # a CamVid val image
    seg = Segmenter(real, shapes=[(64, 96)], max_batch=2, batch_invariant=False)
    images = [image, image[::-1].copy(), rand_images(1, 64, 96)[0]]
    odd = real_image(1, size=(40, 56))
    want, want_logits = reference(real, images + [odd])
    np.testing.assert_array_equal(seg(np.stack(images)), np.stack(want[:3]))  # 2 + 1
    out = seg([images[0], odd, images[2]])
    for got, w in zip(out, [want[0], want[3], want[2]], strict=True):
        np.testing.assert_array_equal(got, w)
    assert_logits_close(seg.logits(np.stack(images)), np.stack(want_logits[:3]))
    # the odd size, and logits (not planned) for 2 + 1 images
    assert seg.metadata["num_classes"] == 11 and seg.stats()["fallback_calls"] == 3


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cpu_low_precision_agrees(tiny, precision):
    seg = Segmenter(tiny, precision=precision, shapes=[(32, 48)], max_batch=2, plan_logits=True)
    batch = rand_images(3, 32, 48, seed=8)
    want, want_logits = reference(tiny, list(batch))
    assert float((seg(batch) == np.stack(want)).mean()) >= 0.995
    logits = seg.logits(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 5, 32, 48)
    assert seg.plan["precision"] == precision and seg.stats()["allocations_after_warmup"] == 0


# --- inputs ---------------------------------------------------------------------------------


def test_inputs_numpy_pil_torch_views_and_lists(tiny):
    from PIL import Image

    seg = Segmenter(tiny, shapes=[(32, 48)], max_batch=2)
    batch = rand_images(3, 32, 48, seed=3)
    want = seg(batch)
    assert want.shape == (3, 32, 48) and want.dtype == np.uint8
    assert seg(batch[1]).shape == (32, 48)
    np.testing.assert_array_equal(seg(Image.fromarray(batch[0])), want[0])
    np.testing.assert_array_equal(seg(torch.from_numpy(batch)), want)
    np.testing.assert_array_equal(seg(Image.fromarray(batch[0]).convert("RGBA")), want[0])
    wide = np.repeat(batch, 2, axis=2)  # every other column is the original: a strided view
    np.testing.assert_array_equal(seg(wide[:, :, ::2]), want)
    np.testing.assert_array_equal(seg(batch[:, ::-1][:, ::-1]), want)  # negative strides
    readonly = batch.copy()
    readonly.flags.writeable = False
    np.testing.assert_array_equal(seg(readonly), want)
    mixed = seg([batch[0], rand_images(1, 20, 30)[0], torch.from_numpy(batch[2])])
    assert [m.shape for m in mixed] == [(32, 48), (20, 30), (32, 48)]
    np.testing.assert_array_equal(mixed[2], want[2])
    logits = seg.logits([batch[0], batch[1]])
    assert [x.shape for x in logits] == [(5, 32, 48), (5, 32, 48)]


# --- errors ---------------------------------------------------------------------------------


def test_model_names_and_paths(tiny, tmp_path, monkeypatch):
    from ifa_rt import bundled

    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path)
    assert ifa_rt.bundled_models() == []
    with pytest.raises(ValueError) as err:
        Segmenter("camvid")
    assert str(err.value) == (
        "Segmenter: 'model': expected a bundled model name (none bundled) "
        "or an artifact path, got 'camvid'"
    )
    (tmp_path / "demo.ifa.pt").write_bytes(tiny.read_bytes())
    assert ifa_rt.bundled_models() == ["demo"]
    assert Segmenter("demo").metadata["preset"] == "tiny-fixture"
    missing = str(tmp_path / "nope.ifa.pt")
    with pytest.raises(ValueError) as err:
        Segmenter(missing)
    assert str(err.value) == (
        "Segmenter: 'model': expected an existing artifact file or a bundled "
        f"model name (demo), got '{missing}' (no such file)"
    )
    with pytest.raises(
        TypeError, match="expected an artifact path or a bundled model name, got int"
    ):
        Segmenter(3)


# --- plan, stats, memory, threads ------------------------------------------------------------


def test_plan_stats_metadata_repr(tiny):
    seg = Segmenter(tiny, shapes=[(32, 48), (64, 64)], max_batch=2, batch_invariant=False)
    plan = seg.plan
    assert plan["device"] == "cpu" and plan["precision"] == "fp32"
    assert plan["buckets"] == [(1, 32, 48), (2, 32, 48), (1, 64, 64), (2, 64, 64)]
    inputs = [b for b in plan["buffers"] if b["name"].startswith("input ")]
    assert [b["bytes"] for b in inputs] == [
        32 * 48 * 3,
        2 * 32 * 48 * 3,
        64 * 64 * 3,
        2 * 64 * 64 * 3,
    ]
    assert plan["total_bytes"] == sum(b["bytes"] for b in plan["buffers"])
    seg(rand_images(3, 64, 64))
    stats = seg.stats()
    assert stats["calls"] == 1 and stats["images"] == 3 and stats["bucket_runs"] == 2
    assert stats["buckets"]["2x64x64"]["calls"] == 1 and stats["buckets"]["1x64x64"]["calls"] == 1
    assert stats["buckets"]["2x64x64"]["p50_ms"] > 0
    assert stats["first_call_ms"] > 0
    assert seg.metadata["classes"] == [f"class{i}" for i in range(5)] == seg.classes
    assert repr(seg).startswith(
        "Segmenter('tiny-fixture', device='cpu', precision='fp32', runtime="
    )
    assert "buckets=[1x32x48, 2x32x48, 1x64x64, 2x64x64]" in repr(seg)


@pytest.mark.parametrize("runtime", ["static", "jit"])
def test_steady_state_allocates_nothing(tiny, runtime):
    seg = Segmenter(tiny, shapes=[(32, 48)], max_batch=4, runtime=runtime, threads=1)
    batch = rand_images(5, 32, 48)
    for i in range(120):
        seg(batch[: 1 + i % 5])
    stats = seg.stats()
    assert stats["bucket_runs"] >= 120 and stats["fallback_calls"] == 0
    assert stats["allocations_after_warmup"] == 0
    assert stats["bytes_allocated_after_warmup"] == 0
    assert stats["cached_allocations_after_warmup"] > 0


def test_threads_share_a_segmenter_and_a_pool(tiny):
    batch = rand_images(4, 32, 48, seed=5)
    seg = Segmenter(tiny, shapes=[(32, 48)], max_batch=2, threads=1)
    want = seg(batch)
    errors = []

    def work(runner):
        for i in range(10):
            n = 1 + i % 4
            if not np.array_equal(runner(batch[:n]), want[:n]):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(seg,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and seg.stats()["calls"] == 31
    pool = SegmenterPool(tiny, size=2, shapes=[(32, 48)], max_batch=2, threads=1)
    assert pool.size == 2 and repr(pool).startswith("SegmenterPool('tiny-fixture', size=2")
    out = pool.map([batch[i] for i in range(4)] * 3)
    for i, labels in enumerate(out):
        np.testing.assert_array_equal(labels, want[i % 4])
    assert sum(s["calls"] for s in pool.stats()) == 12
    with pytest.raises(
        ValueError, match=r"^SegmenterPool: 'size': expected an integer in \[1, 256\], got 0$"
    ):
        SegmenterPool(tiny, size=0)


# --- CUDA (skips without a GPU) ---------------------------------------------------------------

cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not ifa_rt._core.has_cuda_engine(),
    reason="needs a CUDA device and the CUDA engine",
)


@cuda
@pytest.mark.cuda
def test_cuda_matches_and_replays_without_allocating(tiny):
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)], max_batch=4, plan_logits=True)
    batch = rand_images(7, 32, 48, seed=6)
    want, want_logits = reference(tiny, list(batch))
    np.testing.assert_array_equal(seg(batch), np.stack(want))
    assert_logits_close(seg.logits(batch), np.stack(want_logits))
    for i in range(100):
        seg(batch[: 1 + i % 7])
    stats = seg.stats()
    assert stats["allocations_after_warmup"] == 0 and stats["fallback_calls"] == 0
    assert seg.plan["runtime"] == "cuda-graph"


@cuda
@pytest.mark.cuda
def test_cuda_threads_overlap_on_two_staging_slots(tiny):
    """Calls from several threads (and multi-run calls) keep up to two runs in flight on one
    engine's staging slots; every result is still the serial one, and nothing allocates."""
    seg = Segmenter(tiny, device="cuda", shapes=[(32, 48)], max_batch=2)
    batches = [rand_images(n, 32, 48, seed=20 + n) for n in (1, 2, 3, 5)]
    want = [seg(b) for b in batches]
    errors = []

    def work(k: int) -> None:
        for i in range(30):
            j = (i + k) % len(batches)
            if not np.array_equal(seg(batches[j]), want[j]):
                errors.append((k, i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    futures = [seg.submit(batches[3][i % 5]) for i in range(40)]
    for i, f in enumerate(futures):
        np.testing.assert_array_equal(f.result(), want[3][i % 5])
    assert seg.stats()["allocations_after_warmup"] in (0, -1)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_low_precision_agrees(tiny, precision):
    seg = Segmenter(tiny, device="cuda", precision=precision, shapes=[(32, 48)], channels_last=True)
    batch = rand_images(3, 32, 48, seed=7)
    want, _ = reference(tiny, list(batch))
    assert float((seg(batch) == np.stack(want)).mean()) >= 0.995


# --- ifa-rt segment ---------------------------------------------------------------------------


def test_channels_last_option_converts_an_nchw_artifact(real, tmp_path, real_image):
    """channels_last=True on CPU makes 4-D weights NHWC (artifacts exported before ifa_rt did
    so itself); the results stay those of the artifact."""
    module = torch.jit.load(str(real), _extra_files=(extra := {"ifa_rt.json": ""}))
    for p in module.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous()
    nchw = tmp_path / "nchw.ifa.pt"
    torch.jit.save(module, str(nchw), _extra_files=extra)
    assert not any(
        p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in torch.jit.load(str(nchw)).parameters()
    )
    image = real_image(0, (96, 128))
    plain = Segmenter(nchw, shapes=[(96, 128)], threads=1)
    converted = Segmenter(nchw, shapes=[(96, 128)], threads=1, channels_last=True)
    assert converted.options.channels_last and not plain.options.channels_last
    assert (converted(image) == plain(image)).mean() >= 0.999
    want = plain.logits(image)
    assert np.abs(converted.logits(image) - want).max() <= 1e-4 * np.abs(want).max()


def test_pool_shares_the_cores_out_when_threads_are_unset(tiny):
    import os

    pool = SegmenterPool(tiny, size=2, shapes=[(32, 48)])
    want = max(1, (os.cpu_count() or 1) // 2)
    assert [pool._engine.engine(i).options.threads for i in range(2)] == [want, want]
    explicit = SegmenterPool(tiny, size=2, shapes=[(32, 48)], threads=2)
    assert explicit._engine.engine(0).options.threads == 2
