"""Lateral neck of IFA: per-level 1×1 projections, optional ASPP on the last level (model.md §1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ASPP", "LateralNeck", "lateral"]


def lateral(cin: int, cout: int) -> nn.Sequential:
    """conv1×1 (with bias, as the reference) + BN + ReLU; keys ``.0``/``.1`` (docs/model.md §1)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _branch(cin: int, cout: int, k: int, d: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=d if k == 3 else 0, dilation=d, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPP(nn.Module):
    """DeepLabv3 ASPP as the reference has it: pool + 1×1 + three dilated 3×3 (docs/model.md §1).

    Keys: ``conv1.{1,2}`` (pool branch), ``conv{2..5}.{0,1}``; output channels 5 × inner.
    """

    def __init__(self, cin: int, inner: int = 256, dilations: Sequence[int] = (12, 24, 36)) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(cin, inner, 1, bias=False),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
        )
        self.conv2 = _branch(cin, inner, 1, 1)
        self.conv3 = _branch(cin, inner, 3, dilations[0])
        self.conv4 = _branch(cin, inner, 3, dilations[1])
        self.conv5 = _branch(cin, inner, 3, dilations[2])
        self.out_channels = 5 * inner

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2], x.shape[-1]
        pooled = F.interpolate(self.conv1(x), size=[h, w], mode="bilinear", align_corners=True)
        return torch.cat(
            [pooled, self.conv2(x), self.conv3(x), self.conv4(x), self.conv5(x)], dim=1
        )


class LateralNeck(nn.Module):
    """Four lateral projections to ``channels``, no top-down path (docs/model.md §1).

    Keys ``enc1..enc3`` for levels 1–3; the last level goes through ``head`` (1×1) or, with
    ``aspp=True``, through ``aspp`` then ``head`` (3×3, bias-free, Dropout2d 0.1).
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256, aspp: bool = False) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(
                f"LateralNeck: 'in_channels': expected 4 levels, got {list(in_channels)}"
            )
        self.enc1 = lateral(in_channels[0], channels)
        self.enc2 = lateral(in_channels[1], channels)
        self.enc3 = lateral(in_channels[2], channels)
        if aspp:
            self.aspp: nn.Module = ASPP(in_channels[3], inner=channels)
            self.head = nn.Sequential(
                nn.Conv2d(5 * channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Dropout2d(0.1),
            )
        else:
            self.aspp = nn.Identity()  # no parameters, so no keys: the layout stays the reference's
            self.head = lateral(in_channels[3], channels)
        self.channels = channels

    def encode(self, feats: list[Tensor]) -> list[Tensor]:
        """Project the 4 encoder maps to ``channels`` each, sizes unchanged (docs/model.md §1)."""
        return [
            self.enc1(feats[0]),
            self.enc2(feats[1]),
            self.enc3(feats[2]),
            self.head(self.aspp(feats[3])),
        ]

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        return self.encode(feats)
