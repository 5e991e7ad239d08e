"""The AOTInductor engine: a `.pt2` package of the bundled model through the C++ runtime.

Labels must be identical to the TorchScript engine's on real CamVid frames (same fused form,
compiled); unplanned shapes and logits run on the package's TorchScript fallback; a package
that does not fit this machine or the options is refused with a clear error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import ifa_rt
from ifa_rt import _core
from ifa_rt.bundled import resolve
from ifa_rt.deploy import aoti

pytestmark = pytest.mark.slow
SHAPE = (360, 480)  # CamVid's size: the bundled model's planned shape


@pytest.fixture(scope="module")
def cache(tmp_path_factory, monkeypatch_module):
    """A private compile cache for this module."""
    path = tmp_path_factory.mktemp("aoti_cache")
    monkeypatch_module.setenv("IFA_RT_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _compiled_camvid() -> ifa_rt.Segmenter:
    """The bundled model compiled for batched buckets 1 and 2 at 360×480, 2 threads, fp32."""
    return ifa_rt.Segmenter(
        "camvid",
        precision="fp32",
        runtime="aoti",
        shapes=[SHAPE],
        max_batch=2,
        threads=2,
        batch_invariant=False,  # the batched buckets 1 and 2
    )


@pytest.fixture(scope="module")
def aoti_seg(cache):
    """The package compiled on first use (the cache is this module's)."""
    return _compiled_camvid()


@pytest.fixture(scope="module")
def jit_seg():
    return ifa_rt.Segmenter("camvid", precision="fp32", shapes=[SHAPE], max_batch=2, threads=2)


@pytest.fixture(scope="module")
def package(aoti_seg) -> Path:
    return Path(aoti_seg.path)


@pytest.fixture(scope="module")
def frames(real_image):
    return np.stack([real_image(i) for i in range(5)])


def test_labels_identical_to_torchscript_engine_on_real_frames(aoti_seg, jit_seg, frames):
    assert frames.shape[1:3] == SHAPE
    assert aoti_seg.plan["runtime"] == "aoti"
    assert aoti_seg.plan["buckets"] == [(1, *SHAPE), (2, *SHAPE)]
    for frame in frames:
        np.testing.assert_array_equal(aoti_seg(frame), jit_seg(frame))
    # 5 = 2 + 2 + 1 on the compiled buckets; a list goes the same way.
    before = aoti_seg.stats()
    np.testing.assert_array_equal(aoti_seg(frames), jit_seg(frames))
    got = aoti_seg(list(frames[:3]))
    for a, b in zip(got, frames[:3], strict=True):
        np.testing.assert_array_equal(a, jit_seg(b))
    after = aoti_seg.stats()
    assert after["bucket_runs"] - before["bucket_runs"] == 3 + 2
    assert after["fallback_calls"] == before["fallback_calls"]
    assert after["padded_images"] == 0
    # The labels are good ones, not merely equal: road and sky dominate a CamVid frame.
    classes = aoti_seg.classes
    counts = np.bincount(aoti_seg(frames[0]).ravel(), minlength=len(classes))
    assert {classes[i] for i in np.argsort(counts)[-3:]} & {"road", "sky", "building"}


def test_unplanned_shapes_and_logits_run_on_the_fallback(aoti_seg, jit_seg, real_image):
    odd = real_image(1, (200, 312))
    before = aoti_seg.stats()["fallback_calls"]
    np.testing.assert_array_equal(aoti_seg(odd), jit_seg(odd))
    assert aoti_seg.stats()["fallback_calls"] == before + 1
    frame = real_image(2)
    np.testing.assert_allclose(aoti_seg.logits(frame), jit_seg.logits(frame), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"expected a planned shape \(360x480\) in strict mode"):
        ifa_rt.Segmenter(aoti_seg.path, strict=True)(odd)


def test_a_repeated_unplanned_size_is_planned_on_the_fallback(package, jit_seg, real_image):
    seg = ifa_rt.Segmenter(package, threads=2)
    frames = [real_image(i, (200, 312)) for i in range(4)]
    for frame in frames:
        np.testing.assert_array_equal(seg(frame), jit_seg(frame))
    stats = seg.stats()
    assert stats["learned_shapes"] == [(200, 312)]
    assert (stats["fallback_calls"], stats["bucket_runs"]) == (2, 2)
    assert seg.plan["buckets"] == [(1, *SHAPE), (1, 200, 312)]
    assert "fallback input 1x200x312x3" in [b["name"] for b in seg.plan["buffers"]]
    before = seg.stats()["allocations_after_warmup"]
    seg(frames[0])
    assert seg.stats()["allocations_after_warmup"] == before


def test_the_fallback_is_unpacked_under_tmpdir(package, tmp_path, monkeypatch):
    missing = tmp_path / "no-such-dir"
    monkeypatch.setenv("TMPDIR", str(missing))
    with pytest.raises(RuntimeError, match=f"temporary file .* in '{missing}' \\(TMPDIR\\)"):
        ifa_rt.Segmenter(package, threads=1)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    ifa_rt.Segmenter(package, threads=1)  # unpacked there, and removed once loaded
    assert not list(tmp_path.iterdir())


def test_steady_state_allocates_nothing(aoti_seg, frames):
    before = aoti_seg.stats()["allocations_after_warmup"]
    for i in range(20):
        aoti_seg(frames[i % 2 : i % 2 + 1 + i % 2])  # batches of 1 and 2
    stats = aoti_seg.stats()
    assert stats["allocations_after_warmup"] == before == 0
    assert stats["cached_allocations_after_warmup"] > 0  # the counter is live


def test_second_construction_uses_the_cache(aoti_seg, cache, monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("recompiled although the package is cached")

    monkeypatch.setattr(aoti, "compile_package", no_compile)
    again = _compiled_camvid()
    assert again.path == aoti_seg.path
    assert Path(again.path).parent == cache
    # A package path without shapes plans the package's own buckets.
    own = ifa_rt.Segmenter(aoti_seg.path, batch_invariant=False)
    assert own.plan["buckets"] == [(1, *SHAPE), (2, *SHAPE)]
    assert own.options.max_batch == 2
    invariant = ifa_rt.Segmenter(aoti_seg.path)  # the default: batch 1 only
    assert invariant.plan["buckets"] == [(1, *SHAPE)] and invariant.options.max_batch == 1


def test_package_metadata_describes_the_machine(package):
    meta = aoti.read_package_metadata(package)
    assert meta["engine"] == "aoti" and meta["preset"] == "camvid-lite0"
    block = meta["aoti"]
    assert block["buckets"] == [[1, *SHAPE], [2, *SHAPE]]
    assert block["torch_version"] == __import__("torch").__version__
    assert block["threads"] == 2 and block["precision"] == "fp32"


def _rewrite(package: Path, out: Path, **changes) -> Path:
    """A copy of `package` whose metadata `aoti` block has `changes`."""
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/extra/ifa_rt.json"):
                meta = json.loads(data)
                meta["aoti"].update(changes)
                data = json.dumps(meta).encode()
            dst.writestr(item, data)
    return out


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"cpu_isa": "avx512 avx512_vnni amx_future"},
            "it was compiled for CPU ISA 'avx512 avx512_vnni amx_future', "
            "and this CPU lacks 'amx_future'",
        ),
        (
            {"torch_version": "2.99.0+cpu"},
            "it was compiled with torch 2.99.0+cpu, this runtime has torch",
        ),
        ({"machine": "riscv64"}, "it was compiled for a riscv64 machine"),
    ],
)
def test_package_for_another_machine_is_refused(package, tmp_path, changes, message):
    forged = _rewrite(package, tmp_path / "other.pt2", **changes)
    with pytest.raises(RuntimeError) as err:
        ifa_rt.Segmenter(forged)
    assert f"package '{forged}' cannot run on this machine: {message}" in str(err.value)
    assert "compile it here" in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"precision": "bf16"},
            "Options: 'precision': expected 'fp32' (the precision this package was compiled "
            "for), got 'bf16'",
        ),
        (
            {"shapes": [(512, 1024)]},
            "expected buckets compiled into package",
        ),
        ({"shapes": [SHAPE], "max_batch": 4, "batch_invariant": False}, "got 4x360x480 (recompile"),
        (
            {"runtime": "jit"},
            "Options: 'runtime': expected 'auto' or 'aoti' for an AOTInductor package (.pt2), "
            "got 'jit'",
        ),
    ],
)
def test_options_the_package_cannot_serve_are_refused(package, kwargs, message):
    with pytest.raises(ValueError) as err:
        ifa_rt.Segmenter(package, **kwargs)
    assert message in str(err.value)


def test_a_cuda_package_is_served_by_the_cuda_engine_only(package, tmp_path):
    """The `aoti` block's device picks the engine: a CUDA package is refused on the CPU by
    name and goes to the CUDA engine otherwise (without a GPU: its clear error; with one, this
    forged package's CPU models are refused by the CUDA runner), and a CPU package on CUDA is
    refused."""
    forged = _rewrite(package, tmp_path / "cuda.pt2", device="cuda", cpu_isa="avx512 amx_future")
    with pytest.raises(ValueError) as err:
        ifa_rt.Segmenter(forged)
    assert str(err.value) == (
        "Options: 'device': expected 'cuda' or 'cuda:N' (this package was compiled for CUDA), "
        "got 'cpu'"
    )
    with pytest.raises(RuntimeError) as err:
        ifa_rt.Segmenter(forged, device="cuda")
    if torch.cuda.is_available() and _core.has_cuda_engine():
        assert f"failed to load package '{forged}': model 'labels_1x360x480'" in str(err.value)
    else:
        assert "expected an available CUDA device, got 'cuda': no CUDA device" in str(err.value)
    with pytest.raises(ValueError) as err:
        ifa_rt.Segmenter(package, device="cuda")
    assert str(err.value) == (
        "Options: 'device': expected 'cpu' (this package was compiled for the CPU), got 'cuda'"
    )


def test_compile_package_checks_its_device_before_compiling(tmp_path):
    target = tmp_path / "never.pt2"
    args = (None, {}, tmp_path / "fallback.ifa.pt", target)
    with pytest.raises(ValueError) as err:
        aoti.compile_package(*args, shapes=[SHAPE], device="tpu")
    assert str(err.value) == "export: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'"
    with pytest.raises(ValueError, match="int8 packages run on the CPU only"):
        aoti.compile_package(*args, shapes=[SHAPE], device="cuda", precision="int8")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"expected an available CUDA device, got 'cuda:0'"):
            aoti.compile_package(*args, shapes=[SHAPE], device="cuda:0")
    assert not target.exists()


@pytest.mark.cuda
@pytest.mark.skipif(
    not torch.cuda.is_available() or not _core.has_cuda_engine(),
    reason="needs a CUDA device and the CUDA engine",
)
@pytest.mark.parametrize("coarse", [False, True], ids=["labels", "coarse_logits"])
def test_a_package_compiled_for_cuda_agrees_with_the_cuda_graphs(tmp_path, frames, coarse):
    from ifa_rt.deploy.rebuild import rebuild_from_artifact

    artifact = resolve("camvid")
    wrapper, meta = rebuild_from_artifact(artifact, coarse=coarse)
    path = tmp_path / "camvid-cuda.pt2"
    block = aoti.compile_package(
        wrapper, meta, artifact, path, shapes=[SHAPE], max_batch=2, device="cuda"
    )["aoti"]
    assert block["device"] == "cuda" and block["cuda_capability"]
    seg = ifa_rt.Segmenter(path, device="cuda", batch_invariant=False)
    graphs = ifa_rt.Segmenter(
        artifact, device="cuda", precision="fp32", shapes=[SHAPE], max_batch=2
    )
    assert seg.plan["runtime"] == "aoti" and seg.plan["device"] == "cuda"
    got, want = seg(frames), graphs(frames)
    assert (got == want).mean() >= 0.999
    logits = seg.logits(frames[0])  # on the package's TorchScript fallback, on the GPU
    assert logits.shape == (len(meta["classes"]), *SHAPE)


def test_broken_packages_fail_cleanly(package, tmp_path, aoti_seg, frames):
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(package.read_bytes()[:100_000])
    with pytest.raises(
        RuntimeError,
        match="failed to load package .*not a readable PT2 archive: zip: expected an end",
    ):
        ifa_rt.Segmenter(truncated)
    # One bit flipped inside the compiled model's bytes: its CRC-32 no longer matches, and the
    # package is refused before LibTorch extracts and dlopens a corrupt shared object.
    raw = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as archive:
        big = max(archive.infolist(), key=lambda i: i.file_size)
    raw[big.header_offset + 30 + len(big.filename) + 200] ^= 0x04
    flipped = tmp_path / "bitflip.pt2"
    flipped.write_bytes(bytes(raw))
    name = re.escape(big.filename)
    message = rf"not a readable PT2 archive: zip: record \d+ \('{name}'\) fails its CRC-32 check"
    with pytest.raises(RuntimeError, match=message):
        ifa_rt.Segmenter(flipped)
    no_meta = tmp_path / "plain.pt2"
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(no_meta, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("/extra/ifa_rt.json"):
                dst.writestr(item, src.read(item))
    with pytest.raises(RuntimeError, match="metadata 'ifa_rt.json': expected an extra file"):
        ifa_rt.Segmenter(no_meta)
    # The TorchScript engine refuses runtime "aoti" with a pointer to the compile step.
    opts = _core.Options.from_map({"runtime": "aoti"})
    with pytest.raises(ValueError, match=r"'runtime': 'aoti' expects an AOTInductor package"):
        _core.Segmenter(str(resolve("camvid")), opts)
    # The engine that served before is unharmed.
    assert aoti_seg(frames[0]).shape == SHAPE


def test_runtime_aoti_needs_shapes():
    with pytest.raises(ValueError, match="'shapes': expected the \\(height, width\\) sizes"):
        ifa_rt.Segmenter("camvid", runtime="aoti")


def test_cli_export_compiles_a_preset_into_a_package(tmp_path, real_image):
    """`ifa-rt export --preset … --format aoti`: eager model → artifact → package, one command."""
    out = tmp_path / "lite0.pt2"
    cmd = [sys.executable, "-m", "ifa_rt.cli", "export", "--preset", "camvid-lite0"]
    cmd += ["--format", "aoti", "--shapes", "64x96", "--threads", "1", "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AOTInductor package for 64x96" in done.stdout
    seg = ifa_rt.Segmenter(out, threads=1)
    image = real_image(0, (64, 96))
    assert seg.plan["buckets"] == [(1, 64, 96)]
    # The artifact inside is the portable TorchScript form of the same model.
    with zipfile.ZipFile(out) as archive:
        name = next(n for n in archive.namelist() if n.endswith(aoti.FALLBACK_RECORD))
        (tmp_path / "inside.ifa.pt").write_bytes(archive.read(name))
    ts = ifa_rt.Segmenter(tmp_path / "inside.ifa.pt", threads=1, shapes=[(64, 96)])
    np.testing.assert_array_equal(seg(image), ts(image))


def test_segment_cli_with_the_aoti_runtime(cache, camvid_val_paths, tmp_path, capsys):
    """`ifa-rt segment --runtime aoti`: compiled on first use, labels as the TorchScript engine."""
    from PIL import Image

    from ifa_rt.cli import main as cli_main

    images = [str(p) for p in camvid_val_paths[:2]]
    out = tmp_path / "out"
    assert (
        cli_main(
            [
                "segment",
                "--model",
                "camvid",
                "--runtime",
                "aoti",
                "--precision",
                "fp32",
                "--threads",
                "2",
                *images,
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert "runtime='aoti'" in capsys.readouterr().out
    jit = ifa_rt.Segmenter("camvid", precision="fp32", shapes=[SHAPE], threads=2)
    for path in camvid_val_paths[:2]:
        written = np.asarray(Image.open(out / f"{path.stem}_labels.png"))
        np.testing.assert_array_equal(written, jit(np.asarray(Image.open(path).convert("RGB"))))
