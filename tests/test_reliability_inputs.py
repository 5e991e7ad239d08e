# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""Bad inputs: each raises a typed error whose message says what was expected
and what was given, and the same Segmenter keeps returning reference results afterwards.

Accepted rather than rejected (docs/reliability.md): any numpy view (non-contiguous, negative
or zero strides, Fortran order, read-only) is served, copied into the plan's input buffer
where the layout needs it; torch tensors, PIL images and image file paths likewise; RGBA and
grayscale become RGB (tests/test_inputs_convert.py). Rejected: anything that is not uint8
with 3 channels after that rule, empty, smaller than the artifact's min_size or larger than
16384 per side, an unplanned shape in strict mode, and non-array Python objects.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _reliability import rand_images, reference
from ifa_rt import Segmenter

SEG = "Segmenter.segment: input 'images': "
TYPE = "expected a numpy array, PIL image, torch tensor or DLPack array in host or CUDA memory (or a list of them), got "
IM = rand_images(1, 32, 48, seed=11)[0]
BATCH = rand_images(5, 32, 48, seed=12)


@pytest.fixture(scope="module")
def want(tiny):
    """Reference labels of BATCH, computed before any bad call."""
    return reference(tiny, BATCH)


@pytest.fixture(scope="module")
def seg(tiny, want):
    s = Segmenter(tiny, shapes=[(32, 48)], max_batch=2, threads=1, batch_invariant=False)
    np.testing.assert_array_equal(s(BATCH), want)
    return s


@pytest.fixture(scope="module")
def strict(tiny):
    return Segmenter(tiny, shapes=[(32, 48)], max_batch=2, strict=True, threads=1)


def _b(x: np.ndarray) -> np.ndarray:
    return np.broadcast_to(IM[:1, :1], x)  # a zero-stride view: no memory behind the size


BAD_INPUTS = [
    # (id, input, error type, message after "Segmenter.segment: ")
    (
        "float32",
        IM.astype(np.float32),
        ValueError,
        "input 'images': expected dtype uint8, got float32",
    ),
    ("int16", IM.astype(np.int16), ValueError, "input 'images': expected dtype uint8, got int16"),
    ("bool", IM.astype(bool), ValueError, "input 'images': expected dtype uint8, got bool"),
    (
        "uint16-big-endian",
        IM.astype(">u2"),
        ValueError,
        "input 'images': expected dtype uint8, got uint16",
    ),
    (
        "object",
        np.array([IM, 1], dtype=object),
        ValueError,
        "input 'images': expected dtype uint8, got object",
    ),
    (
        "torch-float",
        torch.zeros(32, 48, 3),
        ValueError,
        "input 'images': expected dtype uint8, got float32",
    ),
    (
        "torch-bool",
        torch.zeros(32, 48, 3, dtype=torch.bool),
        ValueError,
        "input 'images': expected dtype uint8, got bool",
    ),
    (
        "rank0",
        np.array(7, np.uint8),
        ValueError,
        "input 'images': expected shape [H,W,3] or [B,H,W,3], got [] (rank 0)",
    ),
    (
        "rank1",
        np.zeros(0, np.uint8),
        ValueError,
        "input 'images': expected shape [H,W,3] or [B,H,W,3], got [0] (rank 1)",
    ),
    (
        "rank1-two",
        np.zeros(5, np.uint8),
        ValueError,
        "input 'images': expected shape [H,W,3] or [B,H,W,3], got [5] (rank 1)",
    ),
    (
        "rank5",
        IM[None, None],
        ValueError,
        "input 'images': expected shape [H,W,3] or [B,H,W,3], got [1,1,32,48,3] (rank 5)",
    ),
    (
        "2-channels",
        IM[..., :2],
        ValueError,
        "input 'images': expected 3 channels (RGB, last dimension), got 2 (shape [32,48,2])",
    ),
    (
        "5-channels",
        np.zeros((32, 48, 5), np.uint8),
        ValueError,
        "input 'images': expected 3 channels (RGB, last dimension), got 5 (shape [32,48,5])",
    ),
    (
        "batch-2-channels",
        np.zeros((2, 32, 48, 2), np.uint8),
        ValueError,
        "input 'images': expected 3 channels (RGB, last dimension), got 2 (shape [2,32,48,2])",
    ),
    (
        "0-channels",
        np.zeros((32, 48, 0), np.uint8),
        ValueError,
        "input 'images': expected 3 channels (RGB, last dimension), got 0 (shape [32,48,0])",
    ),
    (
        "channels-first",
        np.ascontiguousarray(IM.transpose(2, 0, 1)),
        ValueError,
        "input 'images': expected 3 channels (RGB, last dimension), got 48 (shape [3,32,48])",
    ),
    (
        "channels-first-batch",
        np.zeros((2, 3, 32, 48), np.uint8),
        ValueError,
        "input 'images': expected 3 channels (RGB, last dimension), got 48 (shape [2,3,32,48])",
    ),
    (
        "empty-batch",
        np.zeros((0, 32, 48, 3), np.uint8),
        ValueError,
        "input 'images': expected a non-empty image batch, got shape [0,32,48,3]",
    ),
    (
        "zero-height",
        np.zeros((0, 48, 3), np.uint8),
        ValueError,
        "input 'images': expected a non-empty image batch, got shape [0,48,3]",
    ),
    (
        "zero-width",
        np.zeros((2, 32, 0, 3), np.uint8),
        ValueError,
        "input 'images': expected a non-empty image batch, got shape [2,32,0,3]",
    ),
    (
        "below-min-size",
        np.zeros((8, 48, 3), np.uint8),
        ValueError,
        "input 'images': expected height and width >= 16 (the artifact's min_size), got 8x48",
    ),
    (
        "huge-width",
        _b((16, 100_000, 3)),
        ValueError,
        "input 'images': expected height and width <= 16384, got 16x100000",
    ),
    (
        "huge-square",
        _b((2, 16385, 16385, 3)),
        ValueError,
        "input 'images': expected height and width <= 16384, got 16385x16385",
    ),
    ("none", None, TypeError, "input 'images': " + TYPE + "NoneType"),
    (
        "missing-path",
        "no/such/image.png",
        ValueError,
        "input 'images': expected an image file, got 'no/such/image.png' (no such file)",
    ),
    ("bytes", IM.tobytes(), TypeError, "input 'images': " + TYPE + "bytes"),
    ("int", 3, TypeError, "input 'images': " + TYPE + "int"),
    ("float", 0.5, TypeError, "input 'images': " + TYPE + "float"),
    ("dict", {"image": IM}, TypeError, "input 'images': " + TYPE + "dict"),
    ("numpy-scalar", np.uint8(3), TypeError, "input 'images': " + TYPE + "uint8"),
    ("list-none", [IM, None], TypeError, "input 'images[1]': " + TYPE + "NoneType"),
    (
        "list-float",
        [IM, IM.astype(np.float32)],
        ValueError,
        "input 'images[1]': expected dtype uint8, got float32",
    ),
    (
        "list-2-channels",
        [IM, IM, IM[..., :2]],
        ValueError,
        "input 'images[2]': expected 3 channels (RGB, last dimension), got 2 (shape [32,48,2])",
    ),
    (
        "list-of-batches",
        [IM[None]],
        ValueError,
        "input 'images[0]': expected shape [H,W,3], got [1,32,48,3] (rank 4)",
    ),
    (
        "list-of-rgba-batches",
        [IM, np.zeros((1, 32, 48, 4), np.uint8)],
        ValueError,
        "input 'images[1]': expected shape [H,W,3], got [1,32,48,4] (rank 4)",
    ),
    (
        "list-small",
        [IM, np.zeros((20, 8, 3), np.uint8)],
        ValueError,
        "input 'images[1]': expected height and width >= 16 (the artifact's min_size), got 20x8",
    ),
    (
        "list-huge",
        [_b((16, 16385, 3))],
        ValueError,
        "input 'images[0]': expected height and width <= 16384, got 16x16385",
    ),
    (
        "list-empty-image",
        [IM, np.zeros((0, 0, 3), np.uint8)],
        ValueError,
        "input 'images[1]': expected a non-empty image batch, got shape [0,0,3]",
    ),
]


@pytest.mark.parametrize(
    "x, error, message", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS]
)
def test_bad_input_raises_and_segmenter_still_serves(seg, want, x, error, message):
    calls = seg.stats()["calls"]
    with pytest.raises(error) as err:
        seg(x)
    assert str(err.value) == "Segmenter.segment: " + message
    assert seg.stats()["calls"] == calls  # rejected before it reached the engine
    np.testing.assert_array_equal(seg(BATCH), want)


def test_logits_bad_inputs(seg, want):
    with pytest.raises(ValueError) as err:
        seg.logits(IM.astype(np.float64))
    assert str(err.value) == "Segmenter.logits: input 'images': expected dtype uint8, got float64"
    with pytest.raises(TypeError) as err:
        seg.logits([IM, None])
    assert str(err.value) == "Segmenter.logits: input 'images[1]': " + TYPE + "NoneType"
    with pytest.raises(ValueError) as err:
        seg.logits(np.zeros((1, 32, 48, 2), np.uint8))
    assert str(err.value) == (
        "Segmenter.logits: input 'images': expected 3 channels (RGB, last dimension), got 2 (shape [1,32,48,2])"
    )
    np.testing.assert_array_equal(seg(BATCH), want)


def test_unplanned_shape_in_strict_mode(strict, tiny):
    odd = rand_images(2, 40, 40, seed=13)
    cases = [
        (
            odd,
            "Segmenter.segment: input 'images': expected a planned shape (32x48) in strict mode, got 40x40",
        ),
        (
            [IM, odd[0]],
            "Segmenter.segment: input 'images[1]': expected a planned shape (32x48) in strict mode, got 40x40",
        ),
    ]
    for x, message in cases:
        with pytest.raises(ValueError) as err:
            strict(x)
        assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        strict.logits(odd)
    assert (
        str(err.value)
        == "Segmenter.logits: input 'images': expected a planned shape (32x48) in strict mode, got 40x40"
    )
    np.testing.assert_array_equal(strict(BATCH), reference(tiny, BATCH))
    assert strict.stats()["fallback_calls"] == 0
    with pytest.raises(
        ValueError, match=r"expected a planned shape \(none planned\) in strict mode, got 32x48$"
    ):
        Segmenter(tiny, strict=True)(IM)


def test_accepted_views_give_reference_results(seg, want):
    batch = BATCH
    wide = np.repeat(batch, 2, axis=2)
    bgr = batch[..., ::-1].copy()
    flipped = batch[:, ::-1].copy()
    planar = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # channels-first memory
    readonly = batch.copy()
    readonly.flags.writeable = False
    views = {
        "non-contiguous (every other column)": wide[:, :, ::2],
        "negative row stride": flipped[:, ::-1],
        "negative channel stride": bgr[..., ::-1],
        "negative batch stride": batch[::-1].copy()[::-1],
        "channels-first memory, NHWC view": planar.transpose(0, 2, 3, 1),
        "Fortran order": np.asfortranarray(batch),
        "read-only": readonly,
        "torch permuted": torch.from_numpy(planar).permute(0, 2, 3, 1),
    }
    for name, view in views.items():
        np.testing.assert_array_equal(seg(view), want, err_msg=name)
    np.testing.assert_array_equal(seg(batch[::2]), want[::2])  # strided batch axis
    np.testing.assert_array_equal(seg(np.broadcast_to(batch[1], (3, 32, 48, 3))), want[[1, 1, 1]])
    np.testing.assert_array_equal(seg(Image.fromarray(batch[2])), want[2])
    np.testing.assert_array_equal(seg(Image.fromarray(batch[3]).convert("RGBA")), want[3])


def test_batch_larger_than_max_batch_and_mixed_lists(seg, tiny, want):
    before = seg.stats()
    np.testing.assert_array_equal(seg(BATCH), want)  # 5 images, max_batch 2: 2 + 2 + 1
    after = seg.stats()
    assert after["bucket_runs"] - before["bucket_runs"] == 3
    assert after["padded_images"] == before["padded_images"]  # 1 is a planned batch size
    big = np.concatenate([BATCH] * 5)  # 25 images: 12 runs of 2 and one of 1
    np.testing.assert_array_equal(seg(big), np.concatenate([want] * 5))
    odd = [rand_images(1, h, w, seed=h)[0] for h, w in [(17, 23), (40, 40), (33, 64)]]
    mixed = [BATCH[0], odd[0], BATCH[1], odd[1], odd[2], BATCH[2]]
    out = seg(mixed)
    assert [o.shape for o in out] == [m.shape[:2] for m in mixed]
    for got, image in zip(out, mixed, strict=True):
        np.testing.assert_array_equal(got, reference(tiny, [image])[0])
    assert seg([]) == [] and seg(()) == [] and seg.logits([]) == []


def test_output_buffer_errors_through_core(seg, want):
    engine = seg._engine  # the raw binding checks the caller's buffers itself
    cases = [
        (
            np.empty(10, np.uint8),
            "Segmenter.segment: output 'labels': expected 1536 uint8 elements, got 10",
        ),
        (
            np.empty((32, 48), np.float32),
            "Segmenter.segment: output 'labels': expected a writable C-contiguous uint8 array, got another array",
        ),
        (
            np.empty((48, 32), np.uint8).T,
            "Segmenter.segment: output 'labels': expected a writable C-contiguous uint8 array, got another array",
        ),
    ]
    readonly = np.empty((32, 48), np.uint8)
    readonly.flags.writeable = False
    cases.append((readonly, cases[-1][1]))
    for out, message in cases:
        with pytest.raises(ValueError) as err:
            engine.segment_into(IM, out)
        assert str(err.value) == message
    np.testing.assert_array_equal(seg(BATCH), want)
