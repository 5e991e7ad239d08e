"""`Segmenter` input conversion (ifa_rt/inputs.py) on real CamVid frames with the bundled model:
file paths are decoded with Pillow, RGBA drops its alpha, grayscale is replicated to RGB, and
every other channel count stays a typed error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ifa_rt import Segmenter
from ifa_rt.runtime.inputs import as_array, as_rgb

SIZE = (360, 480)


@pytest.fixture(scope="module")
def seg():
    # TorchScript fp32: exact and quick to build (no compile), one planned CamVid size.
    return Segmenter("camvid", precision="fp32", runtime="jit", shapes=[SIZE], max_batch=2)


@pytest.fixture(scope="module")
def frames(camvid_val_paths):
    """Two real frames (RGB uint8) and their JPEG paths."""
    paths = camvid_val_paths[:2]
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths], paths


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


def test_a_path_gives_the_labels_of_the_decoded_image(seg, frames):
    images, paths = frames
    want = seg(images[0])
    np.testing.assert_array_equal(seg(paths[0]), want)  # pathlib.Path
    np.testing.assert_array_equal(seg(str(paths[0])), want)  # str
    listed = seg([str(paths[0]), paths[1]])
    np.testing.assert_array_equal(listed[1], seg(images[1]))
    np.testing.assert_allclose(seg.logits(paths[1]), seg.logits(images[1]))
    assert seg.submit(paths[1]).result(timeout=60).shape == SIZE  # the Batcher reads paths too


def test_rgba_drops_alpha_like_pillow(seg, frames, tmp_path):
    rgb = frames[0][0]
    alpha = np.random.default_rng(0).integers(0, 256, (*SIZE, 1), dtype=np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    # The rule is Pillow's: convert("RGB") drops alpha, it does not blend it over a background.
    np.testing.assert_array_equal(np.asarray(Image.fromarray(rgba).convert("RGB")), rgb)
    view = as_rgb(rgba)
    assert view.shape == (*SIZE, 3) and np.shares_memory(view, rgba)  # no copy
    want = seg(rgb)
    np.testing.assert_array_equal(seg(rgba), want)
    np.testing.assert_array_equal(seg(torch.from_numpy(rgba)), want)
    np.testing.assert_array_equal(seg(np.stack([rgba, rgba]))[1], want)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(seg(tmp_path / "rgba.png"), want)


def test_grayscale_is_replicated_like_pillow(seg, frames, tmp_path):
    gray = [_gray(f) for f in frames[0]]
    rgb = np.asarray(Image.fromarray(gray[0]).convert("RGB"))
    np.testing.assert_array_equal(rgb, np.repeat(gray[0][..., None], 3, axis=2))
    want = seg(rgb)
    assert not np.array_equal(want, seg(frames[0][0]))  # the colour really mattered
    view = as_rgb(gray[0])
    assert view.shape == (*SIZE, 3) and view.strides[-1] == 0  # a zero-stride view
    np.testing.assert_array_equal(seg(gray[0]), want)  # H×W
    np.testing.assert_array_equal(seg(gray[0][..., None]), want)  # H×W×1
    batch = np.stack(gray)[..., None]  # B×H×W×1
    labels = seg(batch)
    assert labels.shape == (2, *SIZE)
    np.testing.assert_array_equal(labels[0], want)
    np.testing.assert_array_equal(labels[1], seg(np.repeat(batch[1], 3, axis=2)))
    np.testing.assert_array_equal(seg([gray[0], frames[0][1]])[0], want)
    Image.fromarray(gray[0]).save(tmp_path / "gray.png")  # mode "L" on disk
    np.testing.assert_array_equal(seg(str(tmp_path / "gray.png")), want)


def test_path_errors_name_the_file(seg, tmp_path):
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    cases = [
        (
            tmp_path / "missing.jpg",
            f"expected an image file, got '{tmp_path}/missing.jpg' (no such file)",
        ),
        (tmp_path, f"expected an image file, got '{tmp_path}' (not a file)"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError) as err:
            seg(path)
        assert str(err.value) == f"Segmenter.segment: input 'images': {message}"
    with pytest.raises(ValueError) as err:
        seg([np.zeros((*SIZE, 3), np.uint8), str(not_image)])
    assert str(err.value).startswith(
        f"Segmenter.segment: input 'images[1]': expected an image file Pillow can decode, got "
        f"'{not_image}' (cannot identify image file"
    )
    assert seg(np.zeros((*SIZE, 3), np.uint8)).shape == SIZE  # still serving


@pytest.mark.parametrize(
    "shape, given",
    [((*SIZE, 2), "2 (shape [360,480,2])"), ((2, *SIZE, 5), "5 (shape [2,360,480,5])")],
)
def test_other_channel_counts_stay_errors(seg, shape, given):
    with pytest.raises(ValueError) as err:
        seg(np.zeros(shape, np.uint8))
    assert str(err.value) == (
        f"Segmenter.segment: input 'images': expected 3 channels (RGB, last dimension), got {given}"
    )


def test_as_array_leaves_a_list_element_batch_for_the_engine_to_refuse():
    rgba_batch = np.zeros((1, 20, 20, 4), np.uint8)
    assert as_array(rgba_batch, "w", "x").shape == (1, 20, 20, 3)
    assert as_array(rgba_batch, "w", "x", batch=False).shape == (1, 20, 20, 4)
