"""Metrics on hand-made label maps, sliding-window inference, predictor-callable evaluation,
and `ifa-rt eval` on a checkpoint."""

import argparse
import json

import numpy as np
import pytest
import torch

from ifa_rt.cli.eval import configure_parser, run_cli
from ifa_rt.data import default_data_root
from ifa_rt.evaluate import (
    ConfusionMatrix,
    evaluate,
    model_predictor,
    predict_logits,
    sliding_logits,
)

DATA = default_data_root()


def test_iou_on_hand_made_maps():
    target = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 0, 1, 0], [0, 1, 1, 1], [2, 1, 0, 2]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    # class 0: 3 hits, 4 true + 4 predicted -> 3 / (4 + 4 - 3) = 3/5
    # class 1: 3 hits, 4 true + 5 predicted -> 3/6; class 2: 1 hit, 2 true + 1 predicted -> 1/2.
    # The two ignored pixels are skipped.
    np.testing.assert_allclose(cm.iou(), [3 / 5, 1 / 2, 1 / 2])
    assert cm.miou() == pytest.approx((3 / 5 + 1 / 2 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(7 / 10)
    assert cm.matrix.sum() == 10


def test_absent_class_is_nan_and_excluded():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1]))
    assert np.isnan(cm.iou()[2]) and cm.miou() == 1.0
    s = cm.summary(["a", "b", "c"])
    assert s["per_class_iou"] == {"a": 1.0, "b": 1.0, "c": None}


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, (2, 10, 10)), rng.integers(0, 4, (2, 10, 10))
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(p, t)
    b.update(p[0], t[0])
    b.update(p[1], t[1])
    np.testing.assert_array_equal(a.matrix, b.matrix)


def test_bad_shapes_and_values_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="expected 4 pixels"):
        cm.update(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"labels expected in \[0, 3\)"):
        cm.update(np.array([5]), np.array([0]))


class _Tiny(torch.nn.Module):
    """A padded 3×3 conv: its output depends on the window borders."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


def test_sliding_equals_whole_when_window_covers_image():
    m, x = _Tiny().eval(), torch.randn(1, 3, 20, 30)
    whole = predict_logits(m, x).softmax(1)
    torch.testing.assert_close(sliding_logits(m, x, window=30, stride=10), whole)
    torch.testing.assert_close(sliding_logits(m, x, window=769, stride=513), whole)


def test_sliding_averages_overlapping_windows():
    m = torch.nn.Conv2d(3, 4, 1).eval()  # pointwise: every window agrees with the whole image
    x = torch.randn(2, 3, 21, 33)
    out = sliding_logits(m, x, window=8, stride=5)
    torch.testing.assert_close(out, predict_logits(m, x).softmax(1))
    with pytest.raises(ValueError, match="stride > 0"):
        sliding_logits(m, x, window=8, stride=0)


def test_evaluate_any_predictor_callable():
    labels = [np.array([[0, 1], [2, 255]], np.uint8), np.array([[1, 1], [0, 0]], np.uint8)]
    ds = [(np.zeros((2, 2, 3), np.uint8), lbl) for lbl in labels]
    perfect = iter([np.minimum(lbl, 2) for lbl in labels])
    assert evaluate(lambda img: next(perfect), ds, 3).miou() == 1.0
    with pytest.raises(ValueError, match="expected shape"):
        evaluate(lambda img: np.zeros((3, 3), np.uint8), ds, 3)


def test_model_predictor_slide_and_whole_agree_on_small_image():
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    whole = model_predictor(_Tiny(), mode="whole")(img)
    slide = model_predictor(_Tiny(), mode="slide", window=64, stride=32)(img)
    assert whole.shape == (20, 30) and whole.dtype == np.uint8
    np.testing.assert_array_equal(whole, slide)


@pytest.mark.skipif(not (DATA / "camvid").is_dir(), reason=f"no data at {DATA} (IFA_RT_DATA)")
def test_eval_cli_on_checkpoint(tmp_path):
    from ifa_rt.model import build_model
    from ifa_rt.training import save_final

    model = build_model("camvid-lite0", pretrained_backbone=False)
    save_final(model, tmp_path / "m.pt", "camvid-lite0", {})
    p = argparse.ArgumentParser()
    configure_parser(p)
    args = p.parse_args(
        [
            "--checkpoint",
            str(tmp_path / "m.pt"),
            "--limit",
            "1",
            "--out",
            str(tmp_path / "ev"),
            "--data-root",
            str(DATA),
        ]
    )
    assert run_cli(args) == 0
    res = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert 0.0 <= res["miou"] <= 1.0 and len(res["per_class_iou"]) == 11
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
