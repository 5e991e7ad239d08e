"""Dataset facts, CamVid / Cityscapes-layout readers on real files and their errors, and the
joint transforms (alignment, 255 label padding, normalisation)."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from ifa_rt.data import (
    DATASETS,
    IGNORE_INDEX,
    MEAN,
    RandomCrop,
    RandomHFlip,
    RandomScale,
    camvid,
    cityscapes,
    dataset_info,
    default_data_root,
    train_transform,
)

DATA = default_data_root()
needs_data = pytest.mark.skipif(
    not (DATA / "camvid").is_dir(), reason=f"no data at {DATA} (set IFA_RT_DATA)"
)


def test_facts_are_consistent():
    for info in DATASETS.values():
        assert len(info.palette) == len(info.classes) == info.num_classes
    assert DATASETS["camvid"].num_classes == 11 and DATASETS["cityscapes"].num_classes == 19
    with pytest.raises(ValueError, match="'name': expected one of"):
        dataset_info("kitti")


def test_default_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("IFA_RT_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    assert default_data_root("x") == type(tmp_path)("x")


@needs_data
def test_camvid_reader_real_files():
    ds = camvid("val")
    assert len(ds) == 101 and len(camvid("train")) == 367
    image, label = ds.read(0)
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8
    assert label.shape == (360, 480) and label.dtype == np.uint8
    values = set(np.unique(label).tolist())
    assert values <= set(range(11)) | {IGNORE_INDEX}
    raw = np.asarray(Image.open(ds.pairs[0][1]))
    np.testing.assert_array_equal(label == IGNORE_INDEX, raw == 11)  # void -> ignore


@needs_data
def test_cityscapes_reader_real_sample():
    ds = cityscapes("val")
    assert len(ds) == 1
    image, label = ds.read(0)
    assert image.shape == (128, 256, 3) and label.shape == (128, 256)
    assert set(np.unique(label).tolist()) <= set(range(19)) | {IGNORE_INDEX}


def _camvid_folder(root, label_value=3, with_label=True, size=(8, 12)):
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((*size, 3), np.uint8)).save(root / "images" / "val" / "a.png")
    if with_label:
        Image.fromarray(np.full((8, 12), label_value, np.uint8)).save(
            root / "labels" / "val" / "a.png"
        )
    return root


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="images/val"):
        camvid("val", tmp_path)


def test_missing_label_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="a.png' has no label"):
        camvid("val", _camvid_folder(tmp_path, with_label=False))


def test_out_of_range_label_is_named(tmp_path):
    ds = camvid("val", _camvid_folder(tmp_path, label_value=40))
    with pytest.raises(ValueError, match=r"labels/val/a.png.*got \[40\]"):
        ds.read(0)


def test_label_size_mismatch_is_named(tmp_path):
    ds = camvid("val", _camvid_folder(tmp_path, size=(9, 12)))
    with pytest.raises(ValueError, match="expected size"):
        ds.read(0)


def test_cityscapes_missing_label(tmp_path):
    d = tmp_path / "leftImg8bit" / "val" / "x"
    d.mkdir(parents=True)
    (tmp_path / "gtFine" / "val").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(d / "x_000_leftImg8bit.png")
    with pytest.raises(FileNotFoundError, match="x_000_gtFine_labelTrainIds.png"):
        cityscapes("val", tmp_path)


def _coded_pair(h=40, w=56):
    # The image encodes each pixel's label in its red channel, so alignment is checkable.
    label = ((np.arange(h)[:, None] // 4 + np.arange(w)[None] // 4) % 11).astype(np.uint8)
    image = np.stack([label * 20, label, np.zeros_like(label)], -1).astype(np.uint8)
    return image, label


def test_crop_and_flip_keep_alignment():
    random.seed(0)
    image, label = _coded_pair()
    for _ in range(10):
        img, lbl = RandomHFlip(0.5)(*RandomCrop((24, 32))(image, label))
        np.testing.assert_array_equal(img[..., 0], lbl * 20)


def test_scale_keeps_alignment_and_size():
    random.seed(1)
    image, label = _coded_pair()
    img, lbl = RandomScale((0.5, 2.0))(image, label)
    assert img.shape[:2] == lbl.shape
    # Bilinear image vs nearest label agree wherever the label is locally constant.
    flat = np.abs(img[..., 1].astype(int) - lbl) == 0
    assert flat.mean() > 0.6


def test_crop_pads_label_with_ignore_and_image_with_mean():
    random.seed(2)
    image, label = _coded_pair(10, 12)
    img, lbl = RandomCrop((16, 20))(image, label)
    assert img.shape == (16, 20, 3) and lbl.shape == (16, 20)
    pad = lbl == IGNORE_INDEX
    assert pad.sum() == 16 * 20 - 10 * 12
    assert (img[pad] == np.round(MEAN).astype(np.uint8)).all()


def test_train_transform_outputs_tensors():
    image, label = _coded_pair()
    x, y = train_transform((24, 32), (0.5, 1.0))(image, label)
    assert x.dtype == torch.float32 and x.shape == (3, 24, 32)
    assert y.dtype == torch.int64 and y.shape == (24, 32)
