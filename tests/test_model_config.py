"""IFAConfig, presets and builders (model.md §1): builders, and errors that name the bad value."""

from __future__ import annotations

import json

import pytest
import torch

from ifa_rt.model import IFAConfig, build_model, get_preset, ifa_r50, mlp_in_channels, presets


def test_preset_names():
    assert presets() == [
        "cityscapes-r50",
        "cityscapes-r50-aspp",
        "cityscapes-r101",
        "cityscapes-r18",
        "camvid-r18",
        "camvid-lite0",
    ]


def test_shipped_preset_is_the_reference():
    cfg = get_preset("cityscapes-r50")
    assert (cfg.backbone, cfg.num_classes, cfg.neck_channels, cfg.aspp, cfg.mlp_hidden) == (
        "resnet50",
        19,
        256,
        False,
        (512, 256, 256),
    )
    assert cfg.multi_grid and not (
        cfg.unfold or cfg.local_ensemble or cfg.aux or cfg.pretrained_backbone
    )
    assert cfg.mlp_in_channels == 1128


def test_small_presets():
    r18 = get_preset("camvid-r18")
    assert (r18.num_classes, r18.neck_channels, r18.mlp_hidden, r18.aux, r18.multi_grid) == (
        11,
        128,
        (256, 128, 128),
        True,
        False,
    )
    lite = get_preset("camvid-lite0")
    assert (lite.backbone, lite.num_classes, lite.pretrained_backbone, lite.neck_channels) == (
        "efficientnet_lite0",
        11,
        True,
        128,
    )


@pytest.mark.parametrize(
    "name", ["cityscapes-r50", "camvid-r18", "camvid-lite0", "cityscapes-r50-aspp"]
)
def test_to_dict_round_trips_through_json(name):
    cfg = get_preset(name, local_ensemble=True)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert IFAConfig.from_dict(d) == cfg
    assert d["mlp_hidden"] == list(cfg.mlp_hidden)


def test_mlp_width_is_derived_once():
    assert mlp_in_channels(256, False) == 1128
    assert mlp_in_channels(128, True) == 4 * (26 + 128 * 9)
    assert get_preset("camvid-r18", unfold=True).mlp_in_channels == mlp_in_channels(128, True)


def test_overrides_and_multigrid_default_follow_the_backbone():
    assert get_preset("cityscapes-r50", backbone="resnet18").multi_grid is False
    assert get_preset("cityscapes-r18", backbone="resnet101").multi_grid is True
    assert get_preset("camvid-r18", num_classes=None).num_classes == 11  # None keeps the preset's


def test_errors_name_the_bad_value():
    with pytest.raises(
        ValueError, match=r"build_model: unknown preset 'x'; expected one of \['cityscapes-r50'"
    ):
        build_model("x")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['bogus'\]"):
        get_preset("camvid-r18", bogus=1)
    with pytest.raises(ValueError, match=r"'num_classes': expected a positive int, got 0"):
        IFAConfig(num_classes=0)
    with pytest.raises(ValueError, match=r"'backbone': expected one of .*got 'vgg'"):
        IFAConfig(backbone="vgg")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\]"):
        IFAConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match=r"'mlp_hidden'"):
        IFAConfig(mlp_hidden=())


def test_keyword_only_builders():
    with pytest.raises(TypeError):
        ifa_r50(19)  # type: ignore[misc]
    with torch.device("meta"):
        m = ifa_r50(num_classes=7, local_ensemble=True)
    assert m.cfg.num_classes == 7 and m.cfg.local_ensemble and m.preset == "cityscapes-r50"
    assert m.decoder.ifa.imnet[-1].out_channels == 7


def test_lite0_is_imported_lazily():
    pytest.importorskip("ifa_rt.model.efficientnet")
    with torch.device("meta"):
        m = build_model("camvid-lite0", pretrained_backbone=False)
    assert len(m.encoder.channels) == 4
    assert m.decoder.enc1[0].in_channels == m.encoder.channels[0]
