"""Sizes met repeatedly on the unplanned path get planned buckets (`learn_shapes`), bounded,
logged, with the same labels, on real CamVid frames."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import ifa_rt

PLANNED = (360, 480)
LEARN_AFTER = 3  # ifa_rt::kLearnAfter


def _segmenter(**kwargs) -> ifa_rt.Segmenter:
    return ifa_rt.Segmenter(
        "camvid", precision="fp32", runtime="jit", shapes=[PLANNED], threads=2, **kwargs
    )


def test_a_repeated_size_is_planned_with_the_same_labels(real_image, caplog):
    seg = _segmenter()
    reference = _segmenter(learn_shapes=0)
    frames = [real_image(i, (240, 320)) for i in range(LEARN_AFTER + 2)]
    with caplog.at_level(logging.INFO, logger="ifa_rt"):
        for i, frame in enumerate(frames):
            np.testing.assert_array_equal(seg(frame), reference(frame))
            learned = seg.stats()["learned_shapes"]
            assert learned == ([] if i < LEARN_AFTER - 1 else [(240, 320)]), i
    stats = seg.stats()
    assert stats["fallback_calls"] == LEARN_AFTER - 1
    assert stats["bucket_runs"] == len(frames) - (LEARN_AFTER - 1)
    assert stats["buckets"]["1x240x320"]["calls"] == stats["bucket_runs"]
    assert seg.plan["buckets"] == [(1, *PLANNED), (1, 240, 320)]
    assert "input 1x240x320x3" in [b["name"] for b in seg.plan["buffers"]]
    assert reference.stats()["learned_shapes"] == []
    assert reference.stats()["fallback_calls"] == len(frames)
    logged = [r.getMessage() for r in caplog.records if "240x320" in r.getMessage()]
    assert len(logged) == 1, logged
    assert "learned 1 of learn_shapes=4" in logged[0]


def test_a_learned_size_runs_without_new_allocations(real_image):
    seg = _segmenter()
    frame = real_image(0, (256, 352))
    for _ in range(LEARN_AFTER):
        seg(frame)
    before = seg.stats()["allocations_after_warmup"]
    for i in range(6):
        seg(real_image(i % 3, (256, 352)))
    assert seg.stats()["allocations_after_warmup"] == before
    assert seg.stats()["cached_allocations_after_warmup"] > 0  # the counter is live


def test_learning_is_bounded_and_ignores_sizes_met_once(real_image):
    seg = _segmenter(learn_shapes=1)
    for width in range(300, 340, 4):  # ten sizes, each once: nothing to learn
        seg(real_image(0, (232, width)))
    assert seg.stats()["learned_shapes"] == []
    for size in [(200, 288), (208, 304)]:
        for _ in range(LEARN_AFTER + 1):
            seg(real_image(1, size))
    assert seg.stats()["learned_shapes"] == [(200, 288)]  # the bound: one size
    assert seg.plan["buckets"] == [(1, *PLANNED), (1, 200, 288)]


def test_batched_buckets_and_the_list_path_learn_too(real_image):
    seg = _segmenter(max_batch=2, batch_invariant=False)
    frames = np.stack([real_image(i, (224, 288)) for i in range(3)])
    reference = _segmenter(max_batch=2, batch_invariant=False, learn_shapes=0)
    for _ in range(LEARN_AFTER):
        got = seg(list(frames))
    for a, b in zip(got, frames, strict=True):
        np.testing.assert_array_equal(a, reference(b))
    assert seg.plan["buckets"] == [(1, *PLANNED), (2, *PLANNED), (1, 224, 288), (2, 224, 288)]
    np.testing.assert_array_equal(seg(frames), reference(frames))


def test_strict_mode_never_learns(real_image):
    seg = _segmenter(strict=True)
    frame = real_image(0, (240, 320))
    for _ in range(LEARN_AFTER + 1):
        with pytest.raises(ValueError, match="in strict mode"):
            seg(frame)
    assert seg.stats()["learned_shapes"] == []


@pytest.mark.parametrize("value", [-1, 65])
def test_learn_shapes_out_of_range_is_refused(value):
    with pytest.raises(
        ValueError, match=r"Options: 'learn_shapes': expected an integer in \[0, 64\]"
    ):
        _segmenter(learn_shapes=value)


def test_learn_shapes_must_be_an_int():
    with pytest.raises(TypeError, match="'learn_shapes': expected an int, got bool"):
        _segmenter(learn_shapes=True)
