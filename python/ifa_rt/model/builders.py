"""Keyword-only builders, one per preset, in the style of torchvision (model.md §1)."""

from __future__ import annotations

from typing import Any

from .config import get_preset
from .segmentor import IFASegmentor

__all__ = [
    "build_model",
    "ifa_camvid_lite0",
    "ifa_camvid_r18",
    "ifa_r18",
    "ifa_r50",
    "ifa_r50_aspp",
    "ifa_r101",
]


def _ifa(preset: str, **overrides: Any) -> IFASegmentor:
    return IFASegmentor(get_preset(preset, **overrides), preset=preset)


def build_model(preset: str, num_classes: int | None = None, **overrides: Any) -> IFASegmentor:
    """Build the named preset (see ``presets()``); keyword overrides replace ``IFAConfig`` fields.

    Args:
        preset: e.g. 'cityscapes-r50' (the shipped reference configuration).
        num_classes: output classes; None keeps the preset's.
        **overrides: any other ``IFAConfig`` field, e.g. ``local_ensemble=True``; unknown
            names raise.
    """
    return _ifa(preset, num_classes=num_classes, **overrides)


def ifa_r50(
    *, num_classes: int = 19, local_ensemble: bool = False, unfold: bool = False, aux: bool = False
) -> IFASegmentor:
    """The shipped reference IFA: R50 + multi-grid, lateral neck, IFA head ('cityscapes-r50').

    Args:
        num_classes: output classes (Cityscapes: 19).
        local_ensemble: LIIF local ensemble, done correctly (model.md §3); off in the reference.
        unfold: LIIF 3×3 feature unfolding (MLP input ×9 features); off in the reference.
        aux: build the training-only auxiliary head on layer3.
    """
    return _ifa(
        "cityscapes-r50",
        num_classes=num_classes,
        local_ensemble=local_ensemble,
        unfold=unfold,
        aux=aux,
    )


def ifa_r50_aspp(
    *, num_classes: int = 19, local_ensemble: bool = False, unfold: bool = False, aux: bool = False
) -> IFASegmentor:
    """R50 IFA with ASPP on layer4 (reference ``no_aspp=False``; preset 'cityscapes-r50-aspp').

    Args:
        num_classes: output classes.
        local_ensemble: LIIF local ensemble (docs/model.md §3).
        unfold: LIIF 3×3 feature unfolding.
        aux: build the training-only auxiliary head on layer3.
    """
    return _ifa(
        "cityscapes-r50-aspp",
        num_classes=num_classes,
        local_ensemble=local_ensemble,
        unfold=unfold,
        aux=aux,
    )


def ifa_r101(
    *, num_classes: int = 19, local_ensemble: bool = False, unfold: bool = False, aux: bool = False
) -> IFASegmentor:
    """Deep-stem R101 + multi-grid IFA (preset 'cityscapes-r101').

    Args:
        num_classes: output classes.
        local_ensemble: LIIF local ensemble (docs/model.md §3).
        unfold: LIIF 3×3 feature unfolding.
        aux: build the training-only auxiliary head on layer3.
    """
    return _ifa(
        "cityscapes-r101",
        num_classes=num_classes,
        local_ensemble=local_ensemble,
        unfold=unfold,
        aux=aux,
    )


def ifa_r18(
    *, num_classes: int = 19, local_ensemble: bool = False, unfold: bool = False, aux: bool = False
) -> IFASegmentor:
    """Deep-stem R18 IFA with the full-width head (preset 'cityscapes-r18').

    Args:
        num_classes: output classes.
        local_ensemble: LIIF local ensemble (docs/model.md §3).
        unfold: LIIF 3×3 feature unfolding.
        aux: build the training-only auxiliary head on layer3.
    """
    return _ifa(
        "cityscapes-r18",
        num_classes=num_classes,
        local_ensemble=local_ensemble,
        unfold=unfold,
        aux=aux,
    )


def ifa_camvid_r18(
    *, num_classes: int = 11, local_ensemble: bool = False, unfold: bool = False, aux: bool = True
) -> IFASegmentor:
    """Small R18 IFA for CamVid: neck 128, MLP (256, 128, 128), aux head on (preset 'camvid-r18').

    Args:
        num_classes: output classes (CamVid: 11).
        local_ensemble: LIIF local ensemble (docs/model.md §3).
        unfold: LIIF 3×3 feature unfolding.
        aux: build the training-only auxiliary head on layer3.
    """
    return _ifa(
        "camvid-r18", num_classes=num_classes, local_ensemble=local_ensemble, unfold=unfold, aux=aux
    )


def ifa_camvid_lite0(
    *,
    num_classes: int = 11,
    pretrained_backbone: bool = True,
    local_ensemble: bool = False,
    unfold: bool = False,
    aux: bool = False,
) -> IFASegmentor:
    """EfficientNet-Lite0 IFA for CamVid: neck 128, MLP (256, 128, 128) (preset 'camvid-lite0').

    Args:
        num_classes: output classes (CamVid: 11).
        pretrained_backbone: ImageNet weights for the backbone (from the EfficientNet-Lite0
            encoder).
        local_ensemble: LIIF local ensemble (docs/model.md §3).
        unfold: LIIF 3×3 feature unfolding.
        aux: build the training-only auxiliary head on the stride-16 map.
    """
    return _ifa(
        "camvid-lite0",
        num_classes=num_classes,
        pretrained_backbone=pretrained_backbone,
        local_ensemble=local_ensemble,
        unfold=unfold,
        aux=aux,
    )
