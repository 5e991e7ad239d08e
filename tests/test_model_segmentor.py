"""The segmentor: forward contract, aux, batch independence, determinism, scripting (§1)."""

from __future__ import annotations

import pytest
import torch

from ifa_rt.model import IFASegmentor, build_model


@pytest.fixture(scope="module")
def r18() -> IFASegmentor:
    torch.manual_seed(0)
    model = build_model("camvid-r18").eval()
    with torch.no_grad():  # non-trivial BN statistics so eval-mode bugs show
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_forward_contract_odd_size(r18):
    x = torch.randn(1, 3, 61, 83)
    with torch.no_grad():
        y = r18(x)
    assert isinstance(y, torch.Tensor) and y.shape == (1, 11, 61, 83) and y.dtype == torch.float32


def test_aux_only_in_training(r18):
    x = torch.randn(2, 3, 64, 64)
    r18.train()
    try:
        logits, aux = r18(x)
    finally:
        r18.eval()
    assert logits.shape == aux.shape == (2, 11, 64, 64)
    with torch.no_grad():
        assert isinstance(r18(x), torch.Tensor)
    no_aux = build_model("cityscapes-r18", num_classes=3).train()
    out = no_aux(torch.randn(2, 3, 33, 33))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 33, 33)


def test_batch_independence(r18):
    x = torch.randn(2, 3, 49, 65)
    with torch.no_grad():
        both = r18(x)
        single = r18(x[:1])
    assert torch.allclose(both[:1], single, atol=1e-5, rtol=0)


def test_cpu_determinism(r18):
    x = torch.randn(1, 3, 57, 41)
    with torch.no_grad():
        assert torch.equal(r18(x), r18(x))


def test_predict_equals_forward_in_eval(r18):
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(r18.predict(x), r18(x))


def test_script_matches_eager(r18):
    scripted = torch.jit.script(r18.eval())
    x = torch.randn(1, 3, 61, 83)
    with torch.no_grad():
        assert torch.allclose(scripted(x), r18(x), atol=1e-5, rtol=0)
        assert torch.allclose(scripted.predict(x), r18(x), atol=1e-5, rtol=0)


def test_script_r50_reference_config():
    model = build_model("cityscapes-r50").eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5, rtol=0)


def test_script_with_all_options():
    model = build_model(
        "cityscapes-r18",
        num_classes=4,
        neck_channels=16,
        mlp_hidden=(32, 16),
        unfold=True,
        local_ensemble=True,
        aspp=True,
        aux=True,
    ).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 3, 45, 53)
    with torch.no_grad():
        assert torch.allclose(scripted(x), model(x), atol=1e-5, rtol=0)
    scripted.train()
    logits, aux = scripted(torch.randn(2, 3, 45, 53))
    assert logits.shape == aux.shape == (2, 4, 45, 53)


def test_forward_keeps_no_state(r18):
    before = {k: v.clone() for k, v in r18.state_dict().items()}
    with torch.no_grad():
        r18(torch.randn(1, 3, 33, 47))
    assert all(torch.equal(before[k], v) for k, v in r18.state_dict().items())
