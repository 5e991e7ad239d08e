"""The IFA segmentor: encoder → lateral neck → IFA head → bilinear upsample (docs/model.md §1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import IFAConfig
from .head import IFAHead
from .neck import LateralNeck
from .resnet import resnet_encoder

__all__ = ["AuxHead", "IFADecoder", "IFASegmentor", "build_encoder"]


def build_encoder(cfg: IFAConfig) -> nn.Module:
    """Encoder for ``cfg.backbone``: ``encoder(x) -> List[Tensor]`` (strides 4–32), .channels."""
    if cfg.backbone == "efficientnet_lite0":
        # Imported lazily: ResNet models never need the EfficientNet module.
        from .efficientnet import EfficientNetLite0Encoder

        return EfficientNetLite0Encoder(pretrained=cfg.pretrained_backbone)
    return resnet_encoder(
        cfg.backbone, multi_grid=bool(cfg.multi_grid), pretrained=cfg.pretrained_backbone
    )


class IFADecoder(LateralNeck):
    """Neck + IFA head under one prefix: keys ``decoder.enc1``, ``decoder.ifa`` (model.md §2)."""

    def __init__(self, in_channels: list[int], cfg: IFAConfig) -> None:
        super().__init__(in_channels, cfg.neck_channels, aspp=cfg.aspp)
        self.ifa = IFAHead(
            cfg.neck_channels,
            cfg.num_classes,
            cfg.mlp_hidden,
            unfold=cfg.unfold,
            local_ensemble=cfg.local_ensemble,
        )

    def decode(self, feats: list[Tensor]) -> Tensor:
        """Logits on the layer1 grid from the 4 encoder maps (docs/model.md §1)."""
        return self.ifa(self.encode(feats))

    def forward(self, feats: list[Tensor]) -> Tensor:  # type: ignore[override]
        return self.decode(feats)


class AuxHead(nn.Module):
    """Training-only auxiliary head on layer3: key ``aux.{0,1,4}`` (docs/model.md §1)."""

    def __init__(self, cin: int, num_classes: int, inner: int = 256) -> None:
        super().__init__()
        self.aux = nn.Sequential(
            nn.Conv2d(cin, inner, 3, padding=1),
            nn.BatchNorm2d(inner),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(inner, num_classes, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.aux(x)


class IFASegmentor(nn.Module):
    """IFA (Hu et al., ECCV 2022, arXiv 2206.08655) as the reference builds it (docs/model.md §1).

    ``model(x)``: normalised float [B, 3, H, W] → logits [B, C, H, W] at the input size; in
    training mode with ``cfg.aux`` it returns ``(logits, aux_logits)``, both at the input size.
    ``predict(x)`` always returns logits only (use it from other scripted code).
    """

    # Python-side metadata (config dataclass, preset name, checkpoint meta); TorchScript skips it.
    __jit_ignored_attributes__ = ["cfg", "preset", "checkpoint_meta"]

    def __init__(self, cfg: IFAConfig, preset: str | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.preset = preset
        self.checkpoint_meta = {}  # filled by load_checkpoint
        self.encoder = build_encoder(cfg)
        channels = [int(c) for c in self.encoder.channels]
        if len(channels) != 4:
            raise ValueError(f"IFASegmentor: encoder 'channels': expected 4 levels, got {channels}")
        self.decoder = IFADecoder(channels, cfg)
        self.has_aux = cfg.aux
        if cfg.aux:
            self.auxor = AuxHead(channels[2], cfg.num_classes)
        else:
            self.auxor = nn.Identity()  # no keys; never called
        self.num_classes = cfg.num_classes

    @torch.jit.export
    def predict(self, x: Tensor) -> Tensor:
        """Logits [B, C, H, W] at the input size (model.md §1: bilinear, align_corners=True)."""
        h, w = x.shape[2], x.shape[3]
        logits = self.decoder.decode(self.encoder(x))
        return F.interpolate(logits, size=[h, w], mode="bilinear", align_corners=True)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        h, w = x.shape[2], x.shape[3]
        feats = self.encoder(x)
        logits = F.interpolate(
            self.decoder.decode(feats), size=[h, w], mode="bilinear", align_corners=True
        )
        if self.training and self.has_aux:
            aux = F.interpolate(
                self.auxor(feats[2]), size=[h, w], mode="bilinear", align_corners=True
            )
            return logits, aux
        return logits
