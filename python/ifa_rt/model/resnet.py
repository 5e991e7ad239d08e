"""Deep-stem ResNet encoder of the reference IFA (model.md §1), output stride 32, 4 feature maps."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

__all__ = ["BasicBlock", "Bottleneck", "ResNetEncoder", "resnet_encoder"]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 block; never dilated, as in the reference (docs/model.md §1)."""

    expansion = 1

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if dilation != 1:
            raise ValueError(f"BasicBlock: 'dilation': expected 1 (no multi-grid), got {dilation}")
        self.conv1 = _conv3x3(cin, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        # One activation module per call site (no parameters, so checkpoints are unchanged):
        # int8 quantizers (PT2E) pair each op with the module that follows it.
        self.relu1 = nn.ReLU(inplace=True)
        self.relu_out = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu_out(out + self.downsample(x))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3×3 conv (docs/model.md §1)."""

    expansion = 4

    def __init__(
        self,
        cin: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        # One activation module per call site (see BasicBlock).
        self.relu1 = nn.ReLU(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.relu_out = nn.ReLU(inplace=True)
        self.downsample = downsample if downsample is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu_out(out + self.downsample(x))


Block = type[BasicBlock] | type[Bottleneck]


class ResNetEncoder(nn.Module):
    """Deep-stem ResNet returning [layer1..layer4] at strides 4/8/16/32 (docs/model.md §1).

    Keys match the reference checkpoints: ``conv1.{0,1,3,4,6}``, ``bn1``, ``layer{1-4}``.
    """

    def __init__(self, block: Block, layers: Sequence[int], multi_grid: bool = False) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(
                f"ResNetEncoder: 'layers': expected 4 block counts, got {list(layers)}"
            )
        if multi_grid and layers[3] != 3:
            raise ValueError(
                f"ResNetEncoder: 'multi_grid' needs 3 blocks in layer4, got {layers[3]}"
            )
        self.conv1 = nn.Sequential(
            _conv3x3(3, 64, stride=2),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            _conv3x3(64, 64),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            _conv3x3(64, 128),
        )
        self.bn1 = nn.BatchNorm2d(128)
        self.relu = nn.ReLU(inplace=True)
        # ceil_mode makes every later feature size odd for odd inputs (769 → 193, 97, 49, 25).
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self._cin = 128
        self.layer1 = self._make_layer(block, 64, layers[0], 1, [1] * layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, [1] * layers[1])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, [1] * layers[2])
        # The reference applies multi-grid (2,2,4) to layer4 while keeping its stride 2.
        grids = [2, 2, 4] if multi_grid else [1] * layers[3]
        self.layer4 = self._make_layer(block, 512, layers[3], 2, grids)
        self.channels: list[int] = [64 * block.expansion * m for m in (1, 2, 4, 8)]
        del self._cin  # build-time cursor only; keep it out of the scripted module
        self._init_weights()

    def _make_layer(
        self, block: Block, planes: int, blocks: int, stride: int, grids: list[int]
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self._cin != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self._cin, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        mods: list[nn.Module] = [block(self._cin, planes, stride, downsample, grids[0])]
        self._cin = planes * block.expansion
        mods += [block(self._cin, planes, 1, None, grids[i]) for i in range(1, blocks)]
        return nn.Sequential(*mods)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return [x1, x2, x3, x4]


_ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
}


def resnet_encoder(
    name: str, *, multi_grid: bool = False, pretrained: bool = False
) -> ResNetEncoder:
    """Build a deep-stem ResNet encoder by name (docs/model.md §1).

    Args:
        name: one of 'resnet18', 'resnet34', 'resnet50', 'resnet101'.
        multi_grid: layer4 dilations (2, 2, 4); Bottleneck ResNets only.
        pretrained: not available — torchvision weights do not fit the deep stem (docs/model.md §2);
            load a deep-stem backbone state dict into ``model.encoder`` yourself.
    """
    if name not in _ARCHS:
        raise ValueError(f"resnet_encoder: 'name': expected one of {list(_ARCHS)}, got {name!r}")
    if pretrained:
        raise ValueError(
            f"resnet_encoder: 'pretrained': no deep-stem ImageNet weights ship with ifa_rt for "
            f"{name!r} (torchvision's stem does not fit, model.md §2); got True, expected False"
        )
    block, layers = _ARCHS[name]
    return ResNetEncoder(block, layers, multi_grid=multi_grid)
