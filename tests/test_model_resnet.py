"""Encoder and parameter-count facts of the shipped configuration (docs/model.md §1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ifa_rt.model import build_model, resnet_encoder
from ifa_rt.model.resnet import Bottleneck


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_shapes(name: str, h: int, w: int, multi_grid: bool) -> list:
    # The meta device gives exact output shapes without computing anything.
    with torch.device("meta"):
        enc = resnet_encoder(name, multi_grid=multi_grid)
        return [tuple(f.shape[2:]) for f in enc(torch.empty(1, 3, h, w))]


@pytest.mark.parametrize("name,mg", [("resnet50", True), ("resnet18", False)])
def test_feature_sizes_are_odd_from_ceil_mode(name, mg):
    assert _meta_shapes(name, 769, 769, mg) == [(193, 193), (97, 97), (49, 49), (25, 25)]
    assert _meta_shapes(name, 1024, 2048, mg) == [(257, 513), (129, 257), (65, 129), (33, 65)]


def test_real_forward_agrees_with_meta_shapes():
    enc = resnet_encoder("resnet50", multi_grid=True).eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 65, 97))
    assert [tuple(f.shape[2:]) for f in feats] == _meta_shapes("resnet50", 65, 97, True)
    assert [f.shape[1] for f in feats] == enc.channels == [256, 512, 1024, 2048]


def test_r50_layout_deep_stem_multigrid_v15():
    enc = resnet_encoder("resnet50", multi_grid=True)
    sd = enc.state_dict()
    assert sd["conv1.0.weight"].shape == (64, 3, 3, 3)
    assert sd["conv1.3.weight"].shape == (64, 64, 3, 3)
    assert sd["conv1.6.weight"].shape == (128, 64, 3, 3)
    assert sd["bn1.weight"].shape == (128,)
    assert sd["layer1.0.conv1.weight"].shape == (64, 128, 1, 1)  # layer1 block 0 goes 128 → 256
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 128, 1, 1)
    assert not any(
        k.endswith(".bias")
        and "bn" not in k
        and "downsample.1" not in k
        and "conv1.1" not in k
        and "conv1.4" not in k
        for k in sd
    )  # all convs bias-free
    assert [b.conv2.dilation[0] for b in enc.layer4] == [2, 2, 4]
    assert [b.conv2.padding[0] for b in enc.layer4] == [2, 2, 4]
    assert enc.layer4[0].conv2.stride == (2, 2) and enc.layer4[0].conv1.stride == (1, 1)  # v1.5
    assert enc.maxpool.ceil_mode
    assert all(isinstance(b, Bottleneck) for b in enc.layer3)
    assert len(enc.layer3) == 6


def test_basicblock_has_no_multigrid():
    enc = resnet_encoder("resnet18")
    assert all(b.conv1.dilation == (1, 1) and b.conv2.dilation == (1, 1) for b in enc.layer4)
    with pytest.raises(ValueError, match="multi_grid"):
        build_model("cityscapes-r18", multi_grid=True)


def test_parameter_counts_of_the_shipped_configuration():
    with torch.device("meta"):
        model = build_model("cityscapes-r50", aux=True)
        aspp = build_model("cityscapes-r50-aspp")
    assert _count(model.encoder) == 23_631_808
    assert _count(model.decoder) == 1_768_307
    assert _count(model.decoder.ifa.imnet) == 782_099
    assert _count(model.auxor) == 2_364_947
    assert _count(model) == 27_765_062
    assert _count(aspp.decoder) == 19_399_795


def test_resnet101_depth():
    with torch.device("meta"):
        enc = resnet_encoder("resnet101", multi_grid=True)
    assert [len(layer) for layer in (enc.layer1, enc.layer2, enc.layer3, enc.layer4)] == [
        3,
        4,
        23,
        3,
    ]


def test_errors_show_the_bad_value():
    with pytest.raises(ValueError, match=r"expected one of .*got 'resnet9'"):
        resnet_encoder("resnet9")
    with pytest.raises(ValueError, match="deep-stem"):
        resnet_encoder("resnet50", pretrained=True)
