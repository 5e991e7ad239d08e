"""The shipped CamVid model: its training checkpoint loads by name, the artifact was exported
from exactly that file, and both give the same labels on real frames."""

from __future__ import annotations

import numpy as np
import torch

import ifa_rt
from ifa_rt.bundled import BUNDLED_DIR
from ifa_rt.data import normalize
from ifa_rt.side_files import file_sha256


def test_checkpoint_loads_by_name_with_its_training_record():
    model = ifa_rt.load_checkpoint("camvid")
    assert model.preset == "camvid-lite0" and not model.training
    facts = model.checkpoint_meta["training"]
    assert facts["recipe"]["file"] == "camvid-lite0-all.toml"
    assert facts["data"]["train_sequences"] == ["0001TP", "0006R0", "0016E5"]
    held_out = facts["init"]["validation"]  # stage 1, validated on a recording it never saw
    assert held_out["miou"] > 0.4 and set(held_out["per_class_iou"]) == set(model_classes())
    assert facts["init"]["training"]["data"]["holdout_sequences"] == ["0006R0"]


def model_classes() -> list[str]:
    return ifa_rt.Segmenter("camvid").classes


def test_artifact_was_exported_from_the_shipped_checkpoint():
    meta = ifa_rt.Segmenter("camvid").metadata["training"]
    assert meta["checkpoint_sha256"] == file_sha256(BUNDLED_DIR / "camvid.ckpt.pt")
    assert meta["recipe"] == {"file": "camvid-lite0-all.toml"} and meta["steps"] > 0


def test_checkpoint_and_artifact_agree_on_real_frames(real_image):
    model = ifa_rt.load_checkpoint("camvid")
    seg = ifa_rt.Segmenter("camvid", precision="fp32", shapes=[(360, 480)])
    for index in (0, 50):
        image = real_image(index)
        with torch.inference_mode():
            eager = model(normalize(image)[None]).argmax(1)[0].numpy()
        assert np.mean(seg(image) == eager) > 0.999
