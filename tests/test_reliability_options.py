# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""Bad options (Segmenter, SegmenterPool, devices): each raises a typed error whose message says
what was expected and what was given, and a Segmenter built afterwards gives reference results.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import ifa_rt
from _reliability import rand_images, reference
from ifa_rt import Segmenter, SegmenterPool

BATCH = rand_images(5, 32, 48, seed=12)


@pytest.fixture(scope="module")
def want(tiny):
    """Reference labels of BATCH, computed before any bad call."""
    return reference(tiny, BATCH)


def _huge_plan_gib() -> str:
    batches = sum(2**k for k in range(11))  # 1, 2, 4, .., 1024
    return f"{batches * 16384 * 16384 * 3 / 2**30:.1f} GiB"


BAD_OPTIONS = [
    (
        dict(threads=-1),
        ValueError,
        "Options: 'threads': expected an integer in [0, 1024] (0 = torch's default), got -1",
    ),
    (
        dict(threads=2048),
        ValueError,
        "Options: 'threads': expected an integer in [0, 1024] (0 = torch's default), got 2048",
    ),
    (dict(threads=True), TypeError, "Options: 'threads': expected an int, got bool"),
    (dict(threads=1.5), TypeError, "Options: 'threads': expected an int, got float"),
    (
        dict(precision="fp64"),
        ValueError,
        "Options: 'precision': expected 'fp32', 'fp16', 'bf16' or 'int8', got 'fp64'",
    ),
    (
        dict(precision="int4"),
        ValueError,
        "Options: 'precision': expected 'fp32', 'fp16', 'bf16' or 'int8', got 'int4'",
    ),
    (
        dict(precision=""),
        ValueError,
        "Options: 'precision': expected 'fp32', 'fp16', 'bf16' or 'int8', got ''",
    ),
    (dict(precision=16), TypeError, "Segmenter: 'precision': expected a str, got int"),
    (
        dict(max_batch=0),
        ValueError,
        "Options: 'max_batch': expected an integer in [1, 1024], got 0",
    ),
    (
        dict(max_batch=-3),
        ValueError,
        "Options: 'max_batch': expected an integer in [1, 1024], got -3",
    ),
    (
        dict(max_batch=1025),
        ValueError,
        "Options: 'max_batch': expected an integer in [1, 1024], got 1025",
    ),
    (dict(max_batch=False), TypeError, "Options: 'max_batch': expected an int, got bool"),
    (
        dict(warmup=1),
        ValueError,
        "Options: 'warmup': expected an integer in [2, 100] (the profiling executor needs 2 calls), got 1",
    ),
    (
        dict(device="gpu"),
        ValueError,
        "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'gpu'",
    ),
    (
        dict(device="cuda:-1"),
        ValueError,
        "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'cuda:-1'",
    ),
    (
        dict(device="cuda:"),
        ValueError,
        "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'cuda:'",
    ),
    (
        dict(device="cuda:1x"),
        ValueError,
        "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'cuda:1x'",
    ),
    (
        dict(device="CPU"),
        ValueError,
        "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'CPU'",
    ),
    (
        dict(runtime="fast"),
        ValueError,
        "Options: 'runtime': expected 'auto', 'static', 'jit' or 'aoti', got 'fast'",
    ),
    (
        dict(fuser="fast"),
        ValueError,
        "Options: 'fuser': expected 'auto', 'on' or 'off', got 'fast'",
    ),
    (dict(fuser=1), TypeError, "Options: 'fuser': expected a str, got int"),
    (
        dict(fuser="on"),
        ValueError,
        "Options: 'fuser': expected 'auto' or 'off' on the CPU (TensorExpr fusion runs on CUDA only: torch's CPU builds have no LLVM), got 'on'",
    ),
    (
        dict(device="cuda", precision="int8"),
        ValueError,
        "Options: 'precision': expected 'fp32', 'fp16' or 'bf16' on device 'cuda' (int8 runs on the CPU only, from a quantized AOTInductor package), got 'int8'",
    ),
    (
        dict(device="cuda:1", precision="int8", shapes=[(32, 48)]),
        ValueError,
        "Options: 'precision': expected 'fp32', 'fp16' or 'bf16' on device 'cuda:1' (int8 runs on the CPU only, from a quantized AOTInductor package), got 'int8'",
    ),
    (
        dict(strict="maybe"),
        TypeError,
        "Options: 'strict': expected a bool, got str",
    ),
    (
        dict(shapes=[(32, 48), (32, 48)]),
        ValueError,
        "Options: 'shapes': expected distinct shapes, got a duplicate",
    ),
    (
        dict(shapes=[(0, 48)]),
        ValueError,
        "Options: 'shapes': expected (height, width) pairs in [1, 16384], got 0x48",
    ),
    (
        dict(shapes=[(16385, 48)]),
        ValueError,
        "Options: 'shapes': expected (height, width) pairs in [1, 16384], got 16385x48",
    ),
    (
        dict(shapes=[(-32, 48)]),
        ValueError,
        "Options: 'shapes': expected (height, width) pairs in [1, 16384], got -32x48",
    ),
    (
        dict(shapes=[(32, 48, 3)]),
        TypeError,
        "Options: 'shapes': expected a list of (height, width) int pairs, got (32, 48, 3)",
    ),
    (
        dict(shapes=[(16384, 16384)], max_batch=1024, batch_invariant=False),
        ValueError,
        re.compile(
            r"Options: 'shapes': expected planned input buffers \(max_batch x shapes\) that fit in memory \(\d+\.\d GiB\), got "
            + re.escape(_huge_plan_gib())
        ),
    ),
]


@pytest.mark.parametrize(
    "kwargs, error, message", BAD_OPTIONS, ids=[str(c[0])[:40] for c in BAD_OPTIONS]
)
def test_bad_options(tiny, kwargs, error, message):
    with pytest.raises(error) as err:
        Segmenter(tiny, **kwargs)
    if isinstance(message, re.Pattern):
        assert message.fullmatch(str(err.value)), str(err.value)
    else:
        assert str(err.value) == message


def test_threads_zero_means_torch_default_and_pool_size_errors(tiny, want):
    # threads=0 is documented as "torch's setting" (ifa_rt::Options), so it is accepted; so is
    # None for any option (the C++ default).
    seg = Segmenter(tiny, shapes=[(32, 48)], max_batch=2, threads=0, device=None, warmup=None)
    assert seg.options.threads == 0 and seg.options.device == "cpu"
    np.testing.assert_array_equal(seg(BATCH), want)
    for size, error, message in [
        (0, ValueError, "SegmenterPool: 'size': expected an integer in [1, 256], got 0"),
        (-1, ValueError, "SegmenterPool: 'size': expected an integer in [1, 256], got -1"),
        (257, ValueError, "SegmenterPool: 'size': expected an integer in [1, 256], got 257"),
        (True, TypeError, "SegmenterPool: 'size': expected an int, got bool"),
        ("2", TypeError, "SegmenterPool: 'size': expected an int, got str"),
    ]:
        with pytest.raises(error) as err:
            SegmenterPool(tiny, size=size)
        assert str(err.value) == message
    with pytest.raises(TypeError, match=r"^Options: unknown option 'thread' \(known: device, "):
        Segmenter(tiny, thread=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors without a CUDA device")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_requested_without_a_gpu(tiny, want, device):
    with pytest.raises(RuntimeError) as err:
        Segmenter(tiny, device=device, shapes=[(32, 48)])
    message = f"Segmenter: option 'device': expected an available CUDA device, got '{device}': no CUDA device"
    if not ifa_rt._core.has_cuda_engine():
        message += " (this ifa_rt was built without the CUDA engine; torch has no CUDA)"
    assert str(err.value) == message
    # Nothing half-built is left behind: a CPU engine still loads and serves.
    np.testing.assert_array_equal(Segmenter(tiny, shapes=[(32, 48)])(BATCH), want)


@pytest.mark.skipif(
    not torch.cuda.is_available() or not ifa_rt._core.has_cuda_engine(),
    reason="needs a CUDA device and the CUDA engine",
)
@pytest.mark.cuda
def test_cuda_bad_index(tiny):
    count = torch.cuda.device_count()
    with pytest.raises(RuntimeError) as err:
        Segmenter(tiny, device=f"cuda:{count}")
    assert str(err.value) == (
        f"Segmenter: option 'device': expected cuda:0..cuda:{count - 1}, got 'cuda:{count}'"
    )


def test_options_are_typed_values_and_each_engine_keeps_its_own(tiny):
    """`ifa_rt.Options` objects cross into C++ once: overrides make a validated copy, and the
    options an engine reports are a copy, so writing to them changes nothing that serves."""
    opts = ifa_rt.Options(shapes=[(32, 48)], threads=1, runtime="jit")
    seg = Segmenter(tiny, opts, max_batch=2, precision="fp32")
    assert opts.max_batch == 1 and seg.options.max_batch == 2
    reported = seg.options
    reported.threads = 2
    assert reported.threads == 2 and seg.options.threads == 1
    assert seg.options.shapes == [(32, 48)] and seg.options.runtime == "jit"
    assert ifa_rt.Options(**opts.to_dict()) == opts and opts.replace(threads=3) != opts
    assert ifa_rt.Options.field_names()[:3] == ["device", "precision", "max_batch"]
    with pytest.raises(
        TypeError, match=r"^Segmenter: 'options': expected an ifa_rt.Options, got dict$"
    ):
        Segmenter(tiny, {"threads": 1})
    with pytest.raises(
        ValueError, match=r"^Options: 'threads': expected an integer in \[-2147483648, "
    ):
        ifa_rt.Options(threads=2**40)  # named, not wrapped around to a valid count
