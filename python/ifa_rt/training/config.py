"""Every setting of a training run, each default stated once: `TrainConfig`.

A field is at once a keyword of `TrainConfig`, a key of a recipe (TOML, dashes or
underscores) and a flag of `ifa-rt train` (`cli/train.py` builds its flags from `settings()`).
Values are checked here, whichever of the three they come from.
"""

from __future__ import annotations

import math
import os
import types
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import torch

from ..recipes import load_recipe, recipe_path

__all__ = ["TrainConfig", "Setting", "settings", "recipe_settings"]


def _default_device() -> str:
    """CUDA where there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _s(default: Any = None, help: str = "", **meta: Any) -> Any:
    """A TrainConfig field: its default, what it is (`help`) and how it is written (`meta`)."""
    if callable(default):
        return field(default_factory=default, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Every setting of one training run (docs/model.md §1); build it from a recipe with
    `TrainConfig.from_recipe`. Values are checked on construction (ValueError)."""

    recipe: str | None = _s(
        None,
        "a bundled recipe name (camvid-lite0) or a TOML file of these settings; "
        "flags after it override it",
        flag="--config",
        metavar="RECIPE",
        path=True,
    )
    # Model.
    preset: str = _s("camvid-lite0", "model preset, e.g. camvid-lite0, camvid-r18")
    pretrained: bool | None = _s(
        None, "ImageNet encoder weights true/false (offline, Lite0 only); default: the preset's"
    )
    overrides: dict[str, Any] | None = _s(None, "JSON dict of config overrides for build_model")
    aux: bool | None = _s(None, "enable/disable the aux head (true/false); default: the preset's")
    # Data.
    dataset: Literal["camvid", "cityscapes"] = _s("camvid", "dataset layout to read")
    data_root: str | None = _s(None, "default: $IFA_RT_DATA or ../shared/data", path=True)
    train_split: str = _s("train", "folder(s) to train on, e.g. train or train+val")
    val_split: str = _s("val", "folder(s) to validate on when no --holdout is given")
    holdout: list[str] | None = _s(
        None,
        "validate on these whole recordings of the training split (e.g. 0006R0), "
        "kept out of training; replaces --val-split",
        metavar="SEQ",
    )
    train_limit: int = _s(0, "use only the first N training images", minimum=0)
    crop: tuple[int, int] = _s(
        (240, 320), "training crop height and width", metavar=("H", "W"), minimum=1
    )
    scale: tuple[float, float] = _s(
        (0.5, 1.0), "random rescale range before cropping", metavar=("MIN", "MAX"), minimum=0
    )
    color_jitter: float = _s(
        0.0, "brightness/contrast/saturation jitter strength (0: off)", minimum=0
    )
    # Schedule and optimiser.
    batch: int = _s(8, "images per step", minimum=1)
    epochs: int = _s(10, "epochs to train (unless --steps is given)", minimum=0)
    steps: int = _s(0, "total steps (overrides --epochs)", minimum=0)
    optimizer: Literal["sgd", "adamw"] = _s("adamw", "SGD (momentum 0.9) or AdamW")
    lr: float = _s(1e-3, "peak learning rate of the encoder", minimum=0)
    head_lr_mult: float = _s(10.0, "learning rate multiple for the neck and head", minimum=0)
    weight_decay: float = _s(1e-4, "weight decay", minimum=0)
    warmup: int = _s(0, "linear warm-up steps", minimum=0)
    # Loss.
    ohem_thresh: float = _s(0.7, "OHEM: keep pixels whose true-class probability is below this")
    min_kept: int = _s(100000, "OHEM: keep at least this many pixels per batch", minimum=0)
    class_weights: list[float] | None = _s(
        None, "cross-entropy weight per class (default: all 1)", minimum=0
    )
    aux_weight: float = _s(0.4, "weight of the aux head's loss", minimum=0)
    # Checkpoints and validation.
    ckpt_every: int = _s(50, "save last.pt every N steps", minimum=0)
    val_every: int = _s(1, "validate every N epochs (0: never)", minimum=0)
    val_limit: int | None = _s(None, "validate on the first N val images", minimum=1)
    init: str | None = _s(
        None,
        "start from this checkpoint's weights (fresh optimiser and schedule), e.g. to "
        "continue a held-out-validated run on every frame",
        metavar="CHECKPOINT",
        path=True,
    )
    resume: str | None = _s(
        None, "checkpoint to resume (default: <out>/last.pt if present)", path=True
    )
    no_auto_resume: bool = _s(False, "start afresh even if <out>/last.pt exists")
    stop_at: int = _s(
        0,
        "checkpoint and stop at this step (for time-limited jobs); rerun to resume",
        minimum=0,
    )
    out: str = _s("runs/camvid", "run folder: checkpoints, logs, history", path=True)
    # Machine.
    device: str = _s(_default_device, "torch device (default: cuda if present, else cpu)")
    threads: int = _s(0, "torch CPU threads (0: torch default)", minimum=0)
    amp: Literal["auto", "off", "bf16", "fp16"] = _s(
        "auto", "autocast precision (weights stay fp32); auto: fp16 on CUDA, off on CPU"
    )
    seed: int = _s(0, "seed of every random number generator and the batch order")
    no_progress: bool = _s(False, "no progress bar")

    def __post_init__(self) -> None:
        """Check and normalise every value (lists of fixed length become tuples)."""
        for s in settings():
            setattr(self, s.name, s.check(getattr(self, s.name), f"TrainConfig: '{s.name}'"))

    @classmethod
    def from_recipe(cls, name_or_path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """The settings of a recipe (bundled name or TOML path; a `base` recipe's first),
        then `overrides` (field names) on top."""
        known = [s.name for s in settings()]
        for name in overrides:
            if name not in known:
                raise ValueError(
                    f"TrainConfig.from_recipe: unknown setting '{name}'; expected one of {known}"
                )
        values = recipe_settings(name_or_path)
        values["recipe"] = str(recipe_path(os.fspath(name_or_path)))
        return cls(**{**values, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples), as stored in checkpoints for weights_only loads."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


_KIND_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table (dict)",
}


@dataclass(frozen=True)
class Setting:
    """One TrainConfig field as the outside sees it: flag, default, help and allowed values."""

    name: str
    flag: str
    default: Any
    help: str
    metavar: str | tuple[str, ...] | None
    kind: type  # of one value: bool, int, float, str or dict
    is_list: bool  # a list of values (of `length` values exactly, when that is set)
    length: int | None
    optional: bool  # None is a value: "the preset's", "none" or "no limit"
    choices: tuple | None
    minimum: float | None
    path: bool  # a file or folder: os.PathLike is accepted too

    def check(self, value: Any, where: str) -> Any:
        """`value` converted to this setting's type, or ValueError naming `where`."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{where}: expected {self._want()}, got None")
        if not self.is_list:
            if isinstance(value, (list, tuple)):
                raise ValueError(f"{where}: expected a single value, got {value!r}")
            return self._one(value, where)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if self.length is not None and len(value) != self.length:
            raise ValueError(f"{where}: expected {self.length} values, got {len(value)}")
        items = [self._one(v, where) for v in value]
        return tuple(items) if self.length is not None else items

    def _want(self) -> str:
        """What one value must be, in words."""
        return f"one of {list(self.choices)}" if self.choices else _KIND_WORDS[self.kind]

    def _one(self, v: Any, where: str) -> Any:
        """One value checked against kind, choices and minimum."""
        if self.path and isinstance(v, os.PathLike):
            v = os.fspath(v)
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        ok = {
            bool: isinstance(v, bool),
            int: number and isinstance(v, int),
            float: number and math.isfinite(v),
            str: isinstance(v, str),
            dict: isinstance(v, dict),
        }[self.kind]
        if not ok or (self.choices is not None and v not in self.choices):
            raise ValueError(f"{where}: expected {self._want()}, got {v!r}")
        if self.minimum is not None and v < self.minimum:
            raise ValueError(f"{where}: expected ≥ {self.minimum}, got {v!r}")
        return float(v) if self.kind is float else dict(v) if self.kind is dict else v


def _shape(hint: Any) -> tuple[type, bool, int | None, bool, tuple | None]:
    """(kind, is_list, length, optional, choices) of a field's type annotation."""
    optional = False
    if get_origin(hint) in (Union, types.UnionType):
        rest = [a for a in get_args(hint) if a is not type(None)]
        optional, hint = True, rest[0]
    origin, args = get_origin(hint), get_args(hint)
    if origin is Literal:
        return type(args[0]), False, None, optional, args
    if origin is tuple:
        return args[0], True, len(args), optional, None
    if origin is list:
        return args[0], True, None, optional, None
    return (origin or hint), False, None, optional, None


@cache
def settings() -> tuple[Setting, ...]:
    """Every TrainConfig field as a Setting, in declaration order."""
    hints = get_type_hints(TrainConfig)
    out = []
    for f in fields(TrainConfig):
        kind, is_list, length, optional, choices = _shape(hints[f.name])
        meta = f.metadata
        default = f.default if f.default is not MISSING else f.default_factory()
        out.append(
            Setting(
                name=f.name,
                flag=meta.get("flag", "--" + f.name.replace("_", "-")),
                default=default,
                help=meta["help"],
                metavar=meta.get("metavar"),
                kind=kind,
                is_list=is_list,
                length=length,
                optional=optional,
                choices=choices,
                minimum=meta.get("minimum"),
                path=meta.get("path", False),
            )
        )
    return tuple(out)


def recipe_settings(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """A recipe's settings (a `base` recipe's first, then its own), checked and keyed by field
    name; an unknown key or a mistyped value is a ValueError naming it."""
    by_name = {s.name: s for s in settings() if s.name != "recipe"}
    values = {}
    for key, value in load_recipe(os.fspath(name_or_path)).items():
        name = key.replace("-", "_")
        if name not in by_name:
            expected = sorted(n.replace("_", "-") for n in by_name)
            raise ValueError(f"recipe: unknown setting '{key}'; expected one of {expected}")
        values[name] = by_name[name].check(value, f"recipe: '{key}'")
    return values
