"""Evaluation via PyTorch and via the C++ runtime agree; the bundled model scores well."""

from __future__ import annotations

import json

import numpy as np
import torch

import ifa_rt
from _model_util import randomize_batchnorm
from ifa_rt.cli import main as cli_main
from ifa_rt.data import camvid
from ifa_rt.evaluate import evaluate, model_predictor, segmenter_predictor
from ifa_rt.model import build_model


def test_pytorch_and_cpp_routes_give_the_same_confusion(tmp_path, camvid_root):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("camvid-r18")).eval()
    ifa_rt.export(model, tmp_path / "r18.ifa.pt")
    dataset = camvid("val", camvid_root.parent)
    python_route = evaluate(model_predictor(model), dataset, 11, limit=3)
    cpp_route = evaluate(ifa_rt.Segmenter(tmp_path / "r18.ifa.pt", threads=1), dataset, 11, limit=3)
    # Same labels except where float summation order flips a near-tie.
    differing = np.abs(python_route.matrix - cpp_route.matrix).sum() / 2
    assert differing <= 1e-4 * python_route.matrix.sum()
    assert abs(python_route.miou() - cpp_route.miou()) < 1e-3

    # Sliding windows (200 px, stride 150: 3 x 3 windows on 360x480) agree across routes too.
    seg = ifa_rt.Segmenter(tmp_path / "r18.ifa.pt", threads=1)
    calls = []
    spy = type("Spy", (), {"logits": lambda _, im: calls.append(im.shape) or seg.logits(im)})()
    python_slide = evaluate(
        model_predictor(model, mode="slide", window=200, stride=150), dataset, 11, limit=2
    )
    cpp_slide = evaluate(segmenter_predictor(spy, "slide", 200, 150), dataset, 11, limit=2)
    assert calls == [(200, 200, 3)] * 9 * 2
    differing = np.abs(python_slide.matrix - cpp_slide.matrix).sum() / 2
    assert differing <= 1e-4 * python_slide.matrix.sum()


def test_bundled_model_segments_camvid_val_well(tmp_path, camvid_root, capsys):
    out = tmp_path / "eval"
    args = [
        "eval",
        "--artifact",
        "camvid",
        "--limit",
        "6",
        "--out",
        str(out),
        "--data-root",
        str(camvid_root.parent),
    ]
    assert cli_main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 6
    # val frames (0016E5) are training frames of the bundled model: a sanity range only.
    assert metrics["miou"] > 0.5 and metrics["pixel_accuracy"] > 0.85
    assert "mIoU" in capsys.readouterr().out

    slide = tmp_path / "slide"
    args[args.index(str(out))] = str(slide)
    assert cli_main([*args, "--mode", "slide", "--window", "300", "--stride", "200"]) == 0
    metrics_slide = json.loads((slide / "metrics.json").read_text())
    assert metrics_slide["mode"] == "slide" and metrics_slide["miou"] > 0.5
    assert metrics_slide["miou"] != metrics["miou"]  # the windows were used, not ignored
