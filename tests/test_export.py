"""The artifact: scripted, uint8 NHWC in, labels/logits out, metadata checked (docs/artifact.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ifa_rt
from _model_util import randomize_batchnorm
from ifa_rt.cli import main as cli_main
from ifa_rt.deploy.export import ImageSegmenter, export, load_artifact
from ifa_rt.deploy.metadata import EXTRA_FILE, FORMAT_VERSION
from ifa_rt.model import build_model


@pytest.fixture(scope="module")
def r18(tmp_path_factory):
    """A camvid-r18 model with non-trivial BN statistics and its fused artifact."""
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("camvid-r18")).eval()
    path = tmp_path_factory.mktemp("artifact") / "r18.ifa.pt"
    meta = export(model, path)
    return model, path, meta


def _eager_logits(model, images: np.ndarray) -> torch.Tensor:
    return (
        ImageSegmenter(model, tuple(ifa_rt.data.MEAN), tuple(ifa_rt.data.STD))
        .eval()
        .logits(torch.from_numpy(images))
    )


@pytest.mark.parametrize("size", [(360, 480), (257, 511), (769, 769)])
def test_artifact_matches_eager_model_on_real_images(r18, real_image, size):
    model, path, _ = r18
    module, _ = load_artifact(path)
    images = real_image(1, size)[None]
    with torch.no_grad():
        want = _eager_logits(model, images)
        got = module.logits(torch.from_numpy(images))
        labels = module(torch.from_numpy(images))
    assert got.dtype == torch.float32 and got.shape == (1, 11, *size)
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()
    assert labels.dtype == torch.uint8 and labels.shape == (1, *size)
    assert torch.equal(labels, want.argmax(1).to(torch.uint8))


def test_reference_cityscapes_r50_artifact_matches(tmp_path, real_image):
    torch.manual_seed(0)
    model = randomize_batchnorm(build_model("cityscapes-r50")).eval()
    meta = export(model, tmp_path / "r50.ifa.pt")
    assert meta["classes"][0] == "road" and meta["num_classes"] == 19
    module, _ = load_artifact(tmp_path / "r50.ifa.pt")
    images = real_image(2, (257, 511))[None]
    with torch.no_grad():
        want = _eager_logits(model, images)
        got = module.logits(torch.from_numpy(images))
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_metadata_records_the_model_facts(r18):
    model, path, meta = r18
    _, loaded = load_artifact(path)
    assert loaded == meta
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["classes"][:3] == ["sky", "building", "pole"] and len(meta["palette"]) == 11
    assert meta["preset"] == "camvid-r18" and meta["config"] == model.cfg.to_dict()
    assert (
        meta["torch_version"] == torch.__version__ and meta["ifa_rt_version"] == ifa_rt.__version__
    )
    assert meta["input"]["layout"] == "NHWC" and meta["input"]["dtype"] == "uint8"
    assert meta["form"] == "fused"


def test_batch_and_dynamic_shapes(r18, real_image):
    _, path, _ = r18
    module, _ = load_artifact(path)
    batch = torch.from_numpy(np.stack([real_image(0, (96, 128)), real_image(4, (96, 128))]))
    with torch.no_grad():
        both = module(batch)
        single = module(batch[1:])
        other = module(torch.from_numpy(real_image(0, (65, 77))[None]))
    assert torch.equal(both[1:], single)
    assert other.shape == (1, 65, 77)


def test_precision_follows_the_mean_buffer(r18, real_image):
    _, path, _ = r18
    module, _ = load_artifact(path)
    images = torch.from_numpy(real_image(0, (128, 160))[None])
    with torch.no_grad():
        full = module.logits(images)
        low = module.to(torch.bfloat16).logits(images)
    assert low.dtype == torch.float32
    assert (low.argmax(1) == full.argmax(1)).float().mean() > 0.9


def test_reference_form_exports_too(tmp_path, r18, real_image):
    model, _, _ = r18
    meta = export(model, tmp_path / "ref.ifa.pt", form="reference")
    module, _ = load_artifact(tmp_path / "ref.ifa.pt")
    images = real_image(0, (120, 160))[None]
    with torch.no_grad():
        want = _eager_logits(model, images)
        got = module.logits(torch.from_numpy(images))
    assert meta["form"] == "reference"
    assert (got - want).abs().max() <= 1e-4 * want.abs().max()


def test_unknown_form_is_rejected(tmp_path, r18):
    with pytest.raises(
        ValueError, match=r"^export: 'form': expected one of \['fused', 'reference'\], got 'fast'$"
    ):
        export(r18[0], tmp_path / "x.ifa.pt", form="fast")


def test_wrong_class_count_is_rejected(tmp_path, r18):
    with pytest.raises(ValueError, match=r"^export: 'classes': expected 11 names, got 2$"):
        export(r18[0], tmp_path / "x.ifa.pt", classes=["a", "b"])


def _save_with_metadata(path, meta: str | None) -> None:
    scripted = torch.jit.script(torch.nn.Identity())
    extra = {} if meta is None else {EXTRA_FILE: meta}
    torch.jit.save(scripted, str(path), _extra_files=extra)


def test_plain_torchscript_without_metadata_is_refused(tmp_path):
    _save_with_metadata(tmp_path / "plain.pt", None)
    with pytest.raises(ValueError, match=r"no 'ifa_rt\.json' metadata; not an ifa_rt artifact$"):
        load_artifact(tmp_path / "plain.pt")


def test_unknown_format_version_is_refused(r18, tmp_path):
    meta = dict(r18[2], format_version=99, ifa_rt_version="9.0.0")
    _save_with_metadata(tmp_path / "new.pt", json.dumps(meta))
    with pytest.raises(
        ValueError,
        match=r"'format_version': expected 1, got 99 "
        r"\(exported by ifa_rt 9\.0\.0; upgrade ifa_rt to load it\)$",
    ):
        load_artifact(tmp_path / "new.pt")


def test_metadata_that_is_not_json_is_refused(tmp_path):
    _save_with_metadata(tmp_path / "bad.pt", "{not json")
    with pytest.raises(ValueError, match=r"metadata is not valid JSON"):
        load_artifact(tmp_path / "bad.pt")


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file$"):
        load_artifact(tmp_path / "nope.ifa.pt")
    (tmp_path / "junk.ifa.pt").write_bytes(b"\x00junk" * 100)
    with pytest.raises(ValueError, match=r"not a TorchScript archive"):
        load_artifact(tmp_path / "junk.ifa.pt")


def test_cli_export(tmp_path, capsys):
    out = tmp_path / "cli.ifa.pt"
    assert cli_main(["export", "--preset", "camvid-r18", "-o", str(out)]) == 0
    assert "11 classes, fused form" in capsys.readouterr().out
    assert load_artifact(out)[1]["preset"] == "camvid-r18"


def test_labels_by_max_indices_are_argmax_exactly():
    """The artifact's labels use max(1).indices: the first maximum, NaN wins, like argmax."""
    x = torch.randint(0, 3, (2, 11, 37, 53), generator=torch.Generator().manual_seed(0)).float()
    x[0, :, :3, :3] = float("nan")
    x[1, 4, 5:9, 5:9] = float("nan")
    for layout in (torch.contiguous_format, torch.channels_last):
        y = x.contiguous(memory_format=layout)
        assert torch.equal(y.max(1)[1], x.argmax(1))


def test_reexport_gives_todays_graph_with_the_same_labels(r18, tmp_path, real_image):
    from ifa_rt.deploy.rebuild import reexport_artifact

    _, path, _ = r18
    again = tmp_path / "again.ifa.pt"
    meta = reexport_artifact(path, again)
    assert meta["preset"] == "camvid-r18" and meta["form"] == "fused"
    before, _ = load_artifact(path)
    after, after_meta = load_artifact(again)
    assert after_meta == meta
    images = torch.stack([torch.from_numpy(real_image(i, (96, 128))) for i in range(3)])
    with torch.no_grad():
        assert torch.equal(after(images), before(images))
        scale = before.logits(images).abs().max()
        assert (after.logits(images) - before.logits(images)).abs().max() <= 1e-5 * scale
