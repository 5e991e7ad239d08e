"""The fused inference form (docs/model.md §4) reproduces the reference model exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from _model_util import randomize_batchnorm
from ifa_rt.data.facts import MEAN, STD
from ifa_rt.deploy.fuse import FusedIFA, fold_batchnorms, fuse_model
from ifa_rt.model import build_model


def _normalise(image) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _pair(preset: str, **overrides):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model(preset, **overrides)).eval()
    return model, fuse_model(model)


def _assert_same(ref: torch.Tensor, got: torch.Tensor) -> None:
    scale = ref.abs().max()
    assert (got - ref).abs().max() <= 1e-4 * scale
    # Labels agree wherever the reference's top-2 margin is above float noise.
    top2 = ref.topk(2, dim=1).values
    decided = (top2[:, 0] - top2[:, 1]) > 1e-5 * scale
    assert torch.equal(ref.argmax(1)[decided], got.argmax(1)[decided])


@pytest.mark.parametrize(
    "overrides",
    [{}, {"unfold": True}, {"local_ensemble": True}, {"aspp": True}],
    ids=["default", "unfold", "local_ensemble", "aspp"],
)
def test_fused_matches_reference_options(overrides):
    model, fused = _pair("camvid-r18", **overrides)
    x = torch.randn(2, 3, 131, 197)
    with torch.no_grad():
        _assert_same(model(x), fused(x))


def test_fused_r50_reference_config_matches():
    model, fused = _pair("cityscapes-r50")
    x = torch.randn(1, 3, 97, 161)
    with torch.no_grad():
        _assert_same(model(x), fused(x))


@pytest.mark.parametrize("size", [(360, 480), (257, 511), (250, 250)])
def test_fused_matches_on_real_images(real_image, size):
    model, fused = _pair("camvid-r18")
    x = _normalise(real_image(3, size))
    with torch.no_grad():
        _assert_same(model(x), fused(x))


def test_tie_producing_size_has_the_expected_grids():
    # 250×250 gives 63 and 32 on layer1/layer2: the 32→63 map has an exact tie (as 126→251).
    model, _ = _pair("camvid-r18")
    with torch.no_grad():
        feats = model.encoder(torch.zeros(1, 3, 250, 250))
    assert [f.shape[-1] for f in feats[:2]] == [63, 32]


def test_scripted_fused_matches_and_caches_geometry_once_per_shape():
    model, fused = _pair("camvid-r18")
    scripted = torch.jit.script(fused)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        first = scripted(x)
        entries = len(scripted.cache)
        second = scripted(x)
        assert len(scripted.cache) == entries > 0
        assert torch.equal(first, second)
        scripted(torch.randn(1, 3, 64, 64))
    assert len(scripted.cache) > entries
    with torch.no_grad():
        _assert_same(model(x), first)


def test_no_batchnorm_left_and_no_query_tensor_built():
    model, fused = _pair("cityscapes-r50")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    shapes = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, o: shapes.append(tuple(o.shape)))
        for m in fused.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        fused(torch.randn(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    # The reference MLP input has 4 × (26 + 256) = 1128 channels; the fused form never has it.
    assert all(s[1] != model.cfg.mlp_in_channels for s in shapes)


def test_fold_batchnorms_reports_every_pair():
    model = randomize_batchnorm(build_model("camvid-r18")).eval()
    # The aux head is training-only: its BatchNorm never runs in eval mode.
    total = sum(
        isinstance(m, nn.modules.batchnorm._BatchNorm)
        for name, m in model.named_modules()
        if not name.startswith("auxor")
    )
    folded = fold_batchnorms(model, torch.zeros(1, 3, 64, 64))
    assert len(folded) == total
    assert "encoder.bn1" in folded and "decoder.ifa.imnet.1" in folded


def test_fuse_model_refuses_training_mode():
    with pytest.raises(
        ValueError,
        match=r"^fuse_model: 'model': expected eval mode \(BatchNorm folding\), got training mode$",
    ):
        fuse_model(build_model("camvid-r18").train())


def test_bfloat16_label_agreement(real_image):
    model, fused = _pair("camvid-r18")
    x = _normalise(real_image(0))
    with torch.no_grad():
        ref = fused(x).argmax(1)
        low = torch.jit.script(FusedIFA(model)).to(torch.bfloat16)(x.bfloat16()).float().argmax(1)
    assert (ref == low).float().mean() >= 0.95
