"""Checkpoints: reference layout and loading (model.md §2), our format, errors, `ifa-rt convert`."""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from ifa_rt.cli.convert import configure_parser, run_cli
from ifa_rt.deploy.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    make_reference_checkpoint,
    save_checkpoint,
)
from ifa_rt.model import build_model
from ifa_rt.side_files import file_sha256


def _randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():  # small noise: distinguishable from init, still finite logits
                t.add_(0.01 * torch.randn_like(t))
    return model


@pytest.fixture(scope="module")
def small():
    return _randomise(
        build_model("cityscapes-r18", num_classes=3, neck_channels=8, mlp_hidden=(8,), aux=True)
    )


def test_reference_layout_of_the_shipped_configuration():
    with torch.device("meta"):
        ref = make_reference_checkpoint(build_model("cityscapes-r50", aux=True), epoch=7)
    assert set(ref) == {"epoch", "model_state", "optimizer_state"} and ref["epoch"] == 7
    sd = ref["model_state"]
    assert len(sd) == 394 and all(k.startswith("module.") for k in sd)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["module.encoder.conv1.0.weight"] == (64, 3, 3, 3)
    assert shapes["module.encoder.bn1.weight"] == (128,)
    assert shapes["module.encoder.layer4.2.conv3.weight"] == (2048, 512, 1, 1)
    assert shapes["module.encoder.layer1.0.downsample.1.num_batches_tracked"] == ()
    assert shapes["module.decoder.enc1.0.bias"] == (256,)
    assert shapes["module.decoder.head.0.weight"] == (256, 2048, 1, 1)
    assert shapes["module.decoder.ifa.pos1.emb"] == (12, 2)
    assert shapes["module.decoder.ifa.imnet.0.weight"] == (512, 1128, 1)
    assert shapes["module.decoder.ifa.imnet.9.weight"] == (19, 256, 1)
    assert shapes["module.auxor.aux.0.weight"] == (256, 1024, 3, 3)
    assert shapes["module.auxor.aux.4.weight"] == (19, 256, 1, 1)
    imnet = sorted({int(k.split(".")[4]) for k in sd if ".ifa.imnet." in k})
    assert imnet == [0, 1, 3, 4, 6, 7, 9]
    bns = [k for k in sd if k.endswith("running_mean")]
    assert all(k.replace("running_mean", "num_batches_tracked") in sd for k in bns)


def test_aspp_reference_layout():
    with torch.device("meta"):
        model = build_model("cityscapes-r50-aspp")
    sd = model.state_dict()
    aspp = model.decoder.aspp
    assert [b[0].dilation[0] for b in (aspp.conv3, aspp.conv4, aspp.conv5)] == [12, 24, 36]
    assert all(b[0].bias is None for b in (aspp.conv2, aspp.conv3, aspp.conv4, aspp.conv5))
    assert isinstance(model.decoder.head[3], torch.nn.Dropout2d)
    assert sd["decoder.aspp.conv1.1.weight"].shape == (256, 2048, 1, 1)
    assert sd["decoder.aspp.conv1.2.running_var"].shape == (256,)
    assert sd["decoder.aspp.conv5.0.weight"].shape == (256, 2048, 3, 3)
    assert sd["decoder.head.0.weight"].shape == (256, 1280, 3, 3)
    assert "decoder.head.0.bias" not in sd


def test_round_trip_our_format(tmp_path, small):
    path = tmp_path / "ours.pt"
    save_checkpoint(small, path, preset="cityscapes-r18", meta={"miou": 0.5})
    obj = torch.load(path, weights_only=True)
    assert (obj["format"], obj["version"], obj["preset"]) == (
        "ifa_rt.checkpoint",
        1,
        "cityscapes-r18",
    )
    assert obj["config"] == small.cfg.to_dict()
    loaded = load_checkpoint(path)
    assert (
        not loaded.training
        and loaded.preset == "cityscapes-r18"
        and loaded.checkpoint_meta == {"miou": 0.5, "checkpoint_sha256": file_sha256(path)}
    )
    assert loaded.cfg == small.cfg
    a, b = small.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 33, 41)
    with torch.no_grad():
        y = small.eval()(x)
        assert torch.isfinite(y).all() and torch.equal(y, loaded(x))


def test_reference_checkpoint_default_preset_drops_aux(tmp_path, caplog):
    model = _randomise(build_model("cityscapes-r50", aux=True))
    path = tmp_path / "ref.pth"
    torch.save(make_reference_checkpoint(model, epoch=3), path)
    with caplog.at_level(logging.INFO, logger="ifa_rt.deploy.checkpoint"):
        loaded = load_checkpoint(str(path))
    text = caplog.text
    assert "assuming preset 'cityscapes-r50'" in text
    assert "dropping 9 training-only 'auxor.*' keys" in text
    assert not loaded.cfg.aux and not loaded.training
    assert loaded.checkpoint_meta == {"source": "reference", "epoch": 3}
    src = model.state_dict()
    assert all(torch.equal(v, src[k]) for k, v in loaded.state_dict().items())
    assert len(loaded.state_dict()) == 385


def test_reference_checkpoint_class_count_follows_weights(tmp_path):
    model = build_model("camvid-r18", num_classes=5)
    path = tmp_path / "ref5.pth"
    torch.save(make_reference_checkpoint(model), path)
    loaded = load_checkpoint(path, preset="camvid-r18")
    assert loaded.cfg.num_classes == 5 and loaded.cfg.aux


def test_mismatch_message_groups_and_truncates(tmp_path, small):
    sd = dict(small.state_dict())
    for k in [k for k in sd if k.startswith("auxor.")]:
        del sd[k]
    sd["extra.a"] = torch.zeros(1)
    sd["extra.b"] = torch.zeros(1)
    sd["decoder.ifa.pos1.emb"] = torch.zeros(12, 3)
    path = tmp_path / "bad.pt"
    torch.save(
        {
            "format": "ifa_rt.checkpoint",
            "version": 1,
            "preset": "cityscapes-r18",
            "config": small.cfg.to_dict(),
            "state_dict": sd,
        },
        path,
    )
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(path)
    n = len(small.state_dict())
    assert str(info.value) == (
        f"load_checkpoint: '{path}' (preset 'cityscapes-r18'): state dict does not fit the model "
        f"({n} keys expected, {n - 9 + 2} given)\n"
        "  missing (9): auxor.aux.0.bias, auxor.aux.0.weight, auxor.aux.1.bias, "
        "auxor.aux.1.num_batches_tracked, auxor.aux.1.running_mean, auxor.aux.1.running_var, "
        "auxor.aux.1.weight, auxor.aux.4.bias, … and 1 more\n"
        "  unexpected (2): extra.a, extra.b\n"
        "  mis-shaped (1): decoder.ifa.pos1.emb: expected [12, 2], got [12, 3]"
    )
    assert isinstance(info.value, ValueError)


def test_reference_for_the_wrong_preset_is_a_mismatch(tmp_path):
    with torch.device("meta"):
        ref = make_reference_checkpoint(build_model("cityscapes-r50-aspp"))
    ref["model_state"] = {k: torch.zeros(v.shape) for k, v in ref["model_state"].items()}
    path = tmp_path / "aspp.pth"
    torch.save(ref, path)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"(?s)reference, preset 'cityscapes-r50'.*"
        r"unexpected \(\d+\): decoder\.aspp\..*… and \d+ more.*mis-shaped \(1\): "
        r"decoder\.head\.0\.weight: expected \[256, 2048, 1, 1\], got \[256, 1280, 3, 3\]",
    ):
        load_checkpoint(path)


def test_missing_file_and_non_checkpoints(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=f"no such file '{missing}'"):
        load_checkpoint(missing)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=f"'{text}' is not a readable torch checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match=f"'{other}' is not an IFA checkpoint: .*got keys weights"):
        load_checkpoint(other)
    future = tmp_path / "future.pt"
    torch.save({"format": "ifa_rt.checkpoint", "version": 2}, future)
    with pytest.raises(ValueError, match="expected ifa_rt.checkpoint version 1, got version 2"):
        load_checkpoint(future)
    with pytest.raises(ValueError, match="expected a checkpoint file, got the directory"):
        load_checkpoint(tmp_path)


def test_convert_cli(tmp_path, capsys):
    model = _randomise(build_model("camvid-r18", aux=False))
    ref = tmp_path / "ref.pth"
    torch.save(make_reference_checkpoint(model, epoch=120), ref)
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    out = tmp_path / "ours.pt"
    args = parser.parse_args([str(ref), "-o", str(out), "--preset", "camvid-r18"])
    # camvid-r18 has an aux head, the reference file does not: the mismatch names the missing keys.
    with pytest.raises(CheckpointMismatchError, match=r"missing \(9\): auxor\.aux\.0\.bias"):
        run_cli(args)
    torch.save(make_reference_checkpoint(_randomise(build_model("camvid-r18")), epoch=120), ref)
    assert run_cli(args) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = load_checkpoint(out)
    assert loaded.preset == "camvid-r18" and loaded.checkpoint_meta["epoch"] == 120
    assert loaded.checkpoint_meta["converted_from"].endswith("ref.pth")
