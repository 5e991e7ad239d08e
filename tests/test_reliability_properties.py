"""Property-based tests (hypothesis) of Segmenter over shapes, dtypes, layouts and batches.

Properties:
  1. Any valid uint8 input (planned or not, any batch, any numpy layout) gives the labels of
     TorchScript run from Python one image per call.
  2. Any array at all either is valid (then 1 holds) or raises ValueError with the message
     the input rules predict (RGBA / grayscale made RGB first, then dtype, rank, channels,
     emptiness, size; in that order).
  3. A list of images of mixed sizes gives the same labels as segmenting each one alone.
  4. Splitting and padding follow the plan: a batch of n on max_batch m runs ceil(n/m)
     buckets and pads the remainder up to the next planned batch size.

Bounded and deterministic by default (the "ci" profile: derandomized, 25-40 examples each,
no deadline on a loaded machine); IFA_RT_HYPOTHESIS=long explores with 500 random examples.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from _reliability import reference
from ifa_rt import Segmenter

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "long",
    deadline=None,
    max_examples=500,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
PROFILE = os.environ.get("IFA_RT_HYPOTHESIS", "ci")


def _examples(n: int) -> int:
    """n examples in the "ci" profile, the profile's own count otherwise."""
    return n if PROFILE == "ci" else settings.get_profile(PROFILE).max_examples


PLANNED = (32, 48)
MAX_BATCH = 4
MIN_SIZE = 16  # tiny.ifa.pt's input.min_size
MAX_SIDE = 16384


@pytest.fixture(scope="module")
def seg(tiny):
    return Segmenter(tiny, shapes=[PLANNED], max_batch=MAX_BATCH, threads=1, batch_invariant=False)


sizes = st.one_of(st.just(PLANNED), st.tuples(st.integers(MIN_SIZE, 48), st.integers(MIN_SIZE, 48)))
layouts = st.sampled_from(
    ["contiguous", "flip-rows", "flip-cols", "bgr-view", "every-other-col", "fortran", "planar"]
)


def _layout(images: np.ndarray, layout: str) -> np.ndarray:
    """The same pixels as a differently laid out numpy view."""
    if layout == "flip-rows":
        return images[:, ::-1].copy()[:, ::-1]
    if layout == "flip-cols":
        return images[:, :, ::-1].copy()[:, :, ::-1]
    if layout == "bgr-view":
        return images[..., ::-1].copy()[..., ::-1]
    if layout == "every-other-col":
        return np.repeat(images, 2, axis=2)[:, :, ::2]
    if layout == "fortran":
        return np.asfortranarray(images)
    if layout == "planar":
        return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
    return images


@settings(settings.get_profile(PROFILE))
@given(
    batch=st.integers(1, 2 * MAX_BATCH + 1),
    size=sizes,
    layout=layouts,
    single=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_valid_inputs_match_torchscript(seg, tiny, batch, size, layout, single, seed):
    h, w = size
    images = np.random.default_rng(seed).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    want = reference(tiny, images)
    view = _layout(images, layout)
    if single:
        np.testing.assert_array_equal(seg(view[0]), want[0])
    else:
        np.testing.assert_array_equal(seg(view), want)


DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "int64", "float16", "float32",
          "float64", "bool"]  # fmt: skip


def _as_rgb_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape after the channel rule (ifa_rt.inputs): H×W, and 1 or 4 channels, become RGB."""
    if len(shape) == 2:
        return (*shape, 3)
    if len(shape) in (3, 4) and shape[-1] in (1, 4):
        return (*shape[:-1], 3)
    return shape


def _predicted_error(dtype: str, shape: tuple[int, ...]) -> str | None:
    """The message the input rules give for this array, or None when it is valid."""
    shape = _as_rgb_shape(shape)
    rank = len(shape)
    if dtype != "uint8":
        return f"expected dtype uint8, got {dtype}"
    if rank not in (3, 4):
        dims = ",".join(map(str, shape))
        return f"expected shape [H,W,3] or [B,H,W,3], got [{dims}] (rank {rank})"
    dims = ",".join(map(str, shape))
    if shape[-1] != 3:
        return f"expected 3 channels (RGB, last dimension), got {shape[-1]} (shape [{dims}])"
    h, w = shape[-3], shape[-2]
    if min(shape[:-1]) < 1:
        return f"expected a non-empty image batch, got shape [{dims}]"
    if h > MAX_SIDE or w > MAX_SIDE:
        return f"expected height and width <= {MAX_SIDE}, got {h}x{w}"
    if h < MIN_SIZE or w < MIN_SIZE:
        return f"expected height and width >= {MIN_SIZE} (the artifact's min_size), got {h}x{w}"
    return None


# Arbitrary shapes, and (3 times in 4) image-like ones, so valid inputs are drawn often too.
ANY_SHAPE = st.lists(st.sampled_from([0, 1, 3, 4, 15, 16, 32, MAX_SIDE + 1]), max_size=5)
IMAGE_SHAPE = st.tuples(
    st.sampled_from([(), (1,), (3,), (0,)]),
    st.sampled_from([16, 32, 33, 0, 8, MAX_SIDE + 1]),
    st.sampled_from([16, 48, 47, 0, 15, MAX_SIDE + 1]),
    st.sampled_from([3, 3, 3, 1, 4]),
).map(lambda t: [*t[0], *t[1:]])


@settings(settings.get_profile(PROFILE), max_examples=_examples(80))
@given(
    dtype=st.one_of(st.just("uint8"), st.sampled_from(DTYPES)),
    shape=st.integers(0, 3).flatmap(lambda k: ANY_SHAPE if k == 3 else IMAGE_SHAPE),
)
def test_any_array_is_served_or_rejected_as_predicted(seg, tiny, dtype, shape):
    shape = tuple(shape)
    # Zero strides give any size without memory, so huge shapes cost nothing.
    array = np.broadcast_to(np.zeros((), dtype), shape)
    message = _predicted_error(dtype, shape)
    event("valid" if message is None else message.split(",")[0])
    if message is None:
        got = seg(array)
        shape = _as_rgb_shape(shape)
        assert got.shape == shape[:-1] and got.dtype == np.uint8
        flat = np.zeros(shape, dtype).reshape(-1, *shape[-3:])
        np.testing.assert_array_equal(got.reshape(-1, *shape[-3:-1]), reference(tiny, flat))
        return
    with pytest.raises(ValueError) as err:
        seg(array)
    assert str(err.value) == f"Segmenter.segment: input 'images': {message}"


@settings(settings.get_profile(PROFILE), max_examples=_examples(25))
@given(sizes=st.lists(sizes, min_size=1, max_size=6), seed=st.integers(0, 2**16))
def test_mixed_size_lists_match_single_calls(seg, sizes, seed):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    out = seg(images)
    assert len(out) == len(images)
    for got, image in zip(out, images, strict=True):
        np.testing.assert_array_equal(got, seg(image))


@settings(settings.get_profile(PROFILE), max_examples=_examples(25))
@given(n=st.integers(1, 4 * MAX_BATCH + 3))
def test_batches_split_by_the_plan(seg, n):
    images = np.zeros((n, *PLANNED, 3), np.uint8)
    before = seg.stats()
    seg(images)
    after = seg.stats()
    full, rest = divmod(n, MAX_BATCH)
    planned = sorted({b for b in (1, 2, 4, MAX_BATCH) if b <= MAX_BATCH}, reverse=True)
    runs, left = full, rest
    for b in planned:  # the CPU splits a remainder into the largest planned batches
        runs += left // b
        left %= b
    assert after["bucket_runs"] - before["bucket_runs"] == runs
    assert after["padded_images"] == before["padded_images"]
    assert after["images"] - before["images"] == n
    assert after["fallback_calls"] == before["fallback_calls"]
    assert full * MAX_BATCH + rest == n
