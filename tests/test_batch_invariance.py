"""An image's labels never depend on what it is batched with (Options::batch_invariant, the
default), in every precision, on real CamVid frames; int8 and AOTI are covered where their
packages are built (test_quantize.py, test_aoti.py)."""

from __future__ import annotations

import numpy as np
import pytest

import ifa_rt

SHAPE = (360, 480)


@pytest.fixture(scope="module")
def frames(real_image):
    return np.stack([real_image(i) for i in (0, 25, 50, 75)])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batches_equal_single_images(frames, precision):
    seg = ifa_rt.Segmenter(
        "camvid", precision=precision, runtime="jit", shapes=[SHAPE], max_batch=4, threads=2
    )
    assert seg.options.batch_invariant and seg.options.max_batch == 4
    assert seg.plan["buckets"] == [(1, *SHAPE)]  # one batch size: true by design
    singles = np.stack([seg(f) for f in frames])
    np.testing.assert_array_equal(seg(frames), singles)  # one call of 4
    np.testing.assert_array_equal(seg(frames[:3]), singles[:3])
    futures = [seg.submit(f) for f in frames]  # the batcher groups them
    np.testing.assert_array_equal(np.stack([f.result(60) for f in futures]), singles)
    assert seg.stats()["bucket_runs"] == 4 + 4 + 3 + 4
    assert seg.stats()["allocations_after_warmup"] == 0


def test_batched_buckets_on_request(frames):
    seg = ifa_rt.Segmenter(
        "camvid",
        precision="fp32",
        runtime="jit",
        shapes=[SHAPE],
        max_batch=4,
        threads=2,
        batch_invariant=False,
    )
    assert seg.plan["buckets"] == [(1, *SHAPE), (2, *SHAPE), (4, *SHAPE)]
    assert seg(frames).shape == (4, *SHAPE) and seg.stats()["bucket_runs"] == 1
