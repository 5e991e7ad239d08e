"""Model configuration: one dataclass and the named presets (docs/model.md §1)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BACKBONES",
    "IFAConfig",
    "POS_DIM",
    "PRESETS",
    "get_preset",
    "mlp_in_channels",
    "presets",
]

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101", "efficientnet_lite0")
_BOTTLENECK = ("resnet50", "resnet101")

# SpatialEncoding output width per level: [rel_y, rel_x] + sin/cos of 12 frequencies (model.md §1).
POS_DIM = 26


def mlp_in_channels(neck_channels: int, unfold: bool) -> int:
    """IFA MLP input width, derived here only: 4 × (PE + feature, ×9 if unfolded) (model.md §1)."""
    return 4 * (POS_DIM + neck_channels * (9 if unfold else 1))


@dataclass
class IFAConfig:
    """Every architectural choice of an IFA segmentor (model.md §1, §3); JSON-safe via to_dict()."""

    backbone: str = "resnet50"
    num_classes: int = 19
    neck_channels: int = 256
    aspp: bool = False
    mlp_hidden: tuple[int, ...] = (512, 256, 256)
    unfold: bool = False
    local_ensemble: bool = False
    aux: bool = False
    # None resolves to the reference choice: multi-grid (2,2,4) for Bottleneck ResNets only.
    multi_grid: bool | None = None
    pretrained_backbone: bool = False

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"IFAConfig: 'backbone': expected one of {list(BACKBONES)}, got {self.backbone!r}"
            )
        for name in ("num_classes", "neck_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"IFAConfig: '{name}': expected a positive int, got {value!r}")
        hidden = tuple(self.mlp_hidden)
        if not hidden or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden
        ):
            raise ValueError(
                f"IFAConfig: 'mlp_hidden': expected a non-empty sequence of positive ints, "
                f"got {self.mlp_hidden!r}"
            )
        self.mlp_hidden = hidden
        if self.multi_grid is None:
            self.multi_grid = self.backbone in _BOTTLENECK
        if self.multi_grid and self.backbone not in _BOTTLENECK:
            raise ValueError(
                f"IFAConfig: 'multi_grid': only Bottleneck ResNets {list(_BOTTLENECK)} "
                f"support multi-grid, got backbone {self.backbone!r}"
            )
        for name in (
            "aspp",
            "unfold",
            "local_ensemble",
            "aux",
            "multi_grid",
            "pretrained_backbone",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"IFAConfig: '{name}': expected a bool, got {getattr(self, name)!r}"
                )

    @property
    def mlp_in_channels(self) -> int:
        """Width of the IFA MLP input for this config (see ``mlp_in_channels``)."""
        return mlp_in_channels(self.neck_channels, self.unfold)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (tuples become lists); from_dict(to_dict()) == self."""
        d = dataclasses.asdict(self)
        d["mlp_hidden"] = list(self.mlp_hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IFAConfig:
        """Inverse of to_dict; rejects unknown keys by name."""
        if not isinstance(d, dict):
            raise ValueError(f"IFAConfig.from_dict: expected a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"IFAConfig.from_dict: unknown key(s) {unknown}; "
                f"expected a subset of {sorted(known)}"
            )
        d = dict(d)
        if "mlp_hidden" in d:
            d["mlp_hidden"] = tuple(d["mlp_hidden"])
        return cls(**d)

    def replace(self, **overrides: Any) -> IFAConfig:
        """A copy with some fields changed; unknown names are rejected."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"IFAConfig: unknown option(s) {unknown}; expected a subset of {sorted(known)}"
            )
        d = self.to_dict()
        d.update(overrides)
        if "multi_grid" not in overrides and "backbone" in overrides:
            d["multi_grid"] = None  # re-derive the reference default for the new backbone
        return IFAConfig.from_dict(d)


_SMALL_HEAD = dict(neck_channels=128, mlp_hidden=(256, 128, 128))

PRESETS: dict[str, IFAConfig] = {
    # The shipped reference configuration (model.md §1): R50, multi-grid, lateral neck, no ASPP.
    "cityscapes-r50": IFAConfig(backbone="resnet50", num_classes=19),
    "cityscapes-r50-aspp": IFAConfig(backbone="resnet50", num_classes=19, aspp=True),
    "cityscapes-r101": IFAConfig(backbone="resnet101", num_classes=19),
    "cityscapes-r18": IFAConfig(backbone="resnet18", num_classes=19),
    "camvid-r18": IFAConfig(backbone="resnet18", num_classes=11, aux=True, **_SMALL_HEAD),
    "camvid-lite0": IFAConfig(
        backbone="efficientnet_lite0", num_classes=11, pretrained_backbone=True, **_SMALL_HEAD
    ),
}


def presets() -> list[str]:
    """Names accepted by build_model / load_checkpoint."""
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> IFAConfig:
    """The preset's config with overrides applied (None values are ignored)."""
    if name not in PRESETS:
        raise ValueError(f"build_model: unknown preset {name!r}; expected one of {presets()}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name].replace()
