"""Tier-up: the default Segmenter serves at once on TorchScript, compiles its package in the
background, verifies it and swaps it in between calls; later processes find it in the cache.

Runs on the fixture artifact (a fast compile); the suite disables background compiles
(conftest), so each test here enables them for itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import ifa_rt
import ifa_rt.bundled  # ifa_rt loads it lazily: bound here, so a test run alone finds it
import ifa_rt.side_files
from ifa_rt.runtime import prepare

SHAPE = (32, 48)


@pytest.fixture
def tier_on(monkeypatch, tmp_path_factory):
    """Background compiles on, into a cache of this test module."""
    monkeypatch.setenv("IFA_RT_TIER_UP", "1")
    monkeypatch.setenv("IFA_RT_CACHE", str(tmp_path_factory.getbasetemp() / "tier_cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small fused artifact (AOTInductor compiles fused forms; the C++ fixture is not one)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = ifa_rt.build_model("camvid-r18", neck_channels=16, mlp_hidden=(32, 16)).eval()
    path = tmp_path_factory.mktemp("tier_model") / "small.ifa.pt"
    ifa_rt.export(model, path)
    return path


def _frames(n: int) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (n, *SHAPE, 3), dtype=np.uint8)


def test_swap_under_concurrent_calls_loses_nothing(tier_on, tiny):
    seg = ifa_rt.Segmenter(tiny, shapes=[SHAPE], threads=1, max_batch=4)
    assert seg.stats()["engine"] == "jit+optimize_for_inference fp32"  # serves at once
    assert seg.plan["choice"]["tier_up"]["state"] == "compiling"
    frames = _frames(4)
    want = np.stack([seg(f) for f in frames])
    errors: list[BaseException] = []
    done = threading.Event()
    calls = [0]

    def hammer() -> None:
        try:
            while not done.is_set():
                np.testing.assert_array_equal(seg(frames), want)
                futures = [seg.submit(f) for f in frames]  # through the batcher, swapped too
                for future, labels in zip(futures, want, strict=True):
                    np.testing.assert_array_equal(future.result(timeout=60), labels)
                calls[0] += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        assert seg.wait_ready(300)
        for _ in range(20):  # some calls after the swap too
            np.testing.assert_array_equal(seg(frames), want)
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    tier = seg.plan["choice"]["tier_up"]
    assert tier["state"] == "serving", tier
    assert tier["compile_s"] > 0 and tier["agreement"] >= 0.999
    stats = seg.stats()
    assert stats["engine"] == "aoti fp32" and seg.plan["runtime"] == "aoti"
    assert set(stats["served_by"]) == {"jit+optimize_for_inference fp32", "aoti fp32"}
    assert stats["served_by"]["aoti fp32"] >= 20 and calls[0] > 0
    assert Path(tier["package"]).is_file()


def test_a_second_process_finds_the_package(tier_on, tiny):
    seg = ifa_rt.Segmenter(tiny, shapes=[SHAPE], threads=1)
    assert seg.wait_ready(300) and seg.stats()["engine"] == "aoti fp32"
    code = (
        f"import json, ifa_rt; s = ifa_rt.Segmenter({str(tiny)!r}, shapes=[{SHAPE!r}], threads=1); "
        "print(json.dumps([s.stats()['engine'], s.plan['choice']['tier_up'], "
        "s.stats()['construction_ms']]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    engine, tier, construction_ms = json.loads(out.stdout.strip().splitlines()[-1])
    assert engine == "aoti fp32" and tier is None  # from the cache: no compile, no tier-up
    assert construction_ms > 0


def test_a_corrupt_cache_entry_is_refused_and_rebuilt(tier_on, tiny, caplog):
    settings = {"shapes": [SHAPE], "threads": 1, "precision": "auto"}
    package = prepare.package_path(tiny, settings, "fp32")
    package.parent.mkdir(parents=True, exist_ok=True)
    package.write_bytes(b"not a package")
    seg = ifa_rt.Segmenter(tiny, shapes=[SHAPE], threads=1)
    assert "refused" in caplog.text and "rebuilding" in caplog.text
    assert seg.stats()["engine"] == "jit+optimize_for_inference fp32"
    assert seg.wait_ready(300) and seg.stats()["engine"] == "aoti fp32"
    assert package.stat().st_size > 1000


def test_no_compiler_stays_on_torchscript(tier_on, tiny, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("IFA_RT_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    seg = ifa_rt.Segmenter(tiny, shapes=[SHAPE], threads=1)
    assert seg.wait_ready(60)
    tier = seg.plan["choice"]["tier_up"]
    assert tier["state"] == "unavailable" and "no C++ compiler" in tier["reason"]
    assert "no C++ compiler" in caplog.text
    assert seg.stats()["engine"] == "jit+optimize_for_inference fp32"
    assert seg(_frames(1)[0]).shape == SHAPE  # still serving


def test_auto_skips_int8_without_torchao(monkeypatch):
    real = prepare.importlib.util.find_spec
    monkeypatch.setattr(
        prepare.importlib.util, "find_spec", lambda name: None if name == "torchao" else real(name)
    )
    monkeypatch.setattr(ifa_rt.side_files, "cpu_flags", lambda: {"avx512_vnni"})
    choice = prepare.choose(ifa_rt.bundled.resolve("camvid"), {"shapes": [(360, 480)]})
    assert choice.precision == "fp32" and choice.runtime == "aoti"
    assert choice.skipped["int8"] == "torchao is not installed (pip install 'ifa-rt[quantize]')"


def test_auto_skips_what_the_runtime_cannot_build():
    camvid = ifa_rt.bundled.resolve("camvid")
    choice = prepare.choose(camvid, {"shapes": [(360, 480)], "runtime": "jit"})
    # Then bf16 where the CPU computes it natively (the shipped bf16 gate passed), else fp32.
    native_bf16 = prepare.cpu_has_native_bf16()
    assert choice.runtime == "jit" and choice.precision == ("bf16" if native_bf16 else "fp32")
    assert choice.skipped["int8"] == "int8 runs as a compiled package, and runtime is 'jit'"


def test_bf16_compiles_into_its_own_package(tier_on, tiny):
    """bf16 runs compiled like fp32 and int8 (coarse logits, labels by the runtime), cached
    apart from the fp32 package, close to the TorchScript bf16 engine's labels."""
    compiled = ifa_rt.Segmenter(tiny, precision="bf16", runtime="aoti", shapes=[SHAPE], threads=1)
    assert (compiled.plan["runtime"], compiled.plan["precision"]) == ("aoti", "bf16")
    settings = {"shapes": [SHAPE], "threads": 1}
    assert compiled.path == str(prepare.package_path(tiny, settings, "bf16"))
    assert compiled.path != str(prepare.package_path(tiny, settings, "fp32"))
    scripted = ifa_rt.Segmenter(tiny, precision="bf16", runtime="jit", shapes=[SHAPE], threads=1)
    frames = _frames(4)
    agree = np.mean([(compiled(f) == scripted(f)).mean() for f in frames])
    assert agree > 0.95, agree
    assert compiled.stats()["fallback_calls"] == 0


def test_cli_engine_flags(capsys):
    from ifa_rt.cli import build_parser

    for command in ("segment", "serve", "bench"):
        parser = build_parser([command])
        action = next(
            a
            for sub in parser._subparsers._group_actions
            for a in sub.choices[command]._actions
            if a.dest == "precision"
        )
        assert action.default == "auto" and set(action.choices) >= {"auto", "fp32", "int8"}
