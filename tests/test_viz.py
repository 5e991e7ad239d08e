"""Palette colouring, overlays with a legend, and the confusion heat-map."""

import numpy as np
import pytest
from PIL import Image

from ifa_rt.data import DATASETS
from ifa_rt.viz import colorize, overlay, plot_confusion, side_by_side

INFO = DATASETS["camvid"]


def test_colorize_uses_palette_and_blacks_out_ignore():
    lbl = np.array([[0, 3], [255, 10]], np.uint8)
    rgb = colorize(lbl, INFO.palette)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 1]) == INFO.palette[3] and tuple(rgb[1, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="expected a 2-D map"):
        colorize(np.zeros((2, 2, 1)), INFO.palette)


def test_overlay_blends_and_keeps_ignored_pixels():
    img = np.full((2, 2, 3), 100, np.uint8)
    lbl = np.array([[0, 0], [255, 1]], np.uint8)
    out = overlay(img, lbl, INFO.palette, alpha=0.5)
    assert tuple(out[1, 0]) == (100, 100, 100)
    assert tuple(out[0, 0]) == (114, 114, 114)  # (100 + 128) / 2
    with pytest.raises(ValueError, match="expected shape"):
        overlay(img, np.zeros((3, 3), np.uint8), INFO.palette)


def test_side_by_side_has_both_panels_and_legend(tmp_path):
    img = np.zeros((32, 40, 3), np.uint8)
    lbl = np.zeros((32, 40), np.uint8)
    lbl[:, 20:] = 8
    panel = side_by_side(img, lbl, INFO.palette, INFO.classes, path=tmp_path / "p.png")
    assert panel.size[0] == 80 and panel.size[1] > 32
    with Image.open(tmp_path / "p.png") as saved:
        assert saved.size == panel.size
    # Right half top-right pixel is the car colour blended with black.
    assert panel.getpixel((79, 0)) == tuple(round(c * 0.5) for c in INFO.palette[8])


def test_plot_confusion_writes_png(tmp_path):
    m = np.eye(11, dtype=np.int64) * 5 + 1
    plot_confusion(m, INFO.classes, tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        assert im.size[0] > 200
