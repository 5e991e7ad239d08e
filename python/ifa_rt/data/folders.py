"""Readers for CamVid-style and Cityscapes-layout folders: pairs of (RGB image, train-id label)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .facts import IGNORE_INDEX, DatasetInfo, dataset_info

__all__ = [
    "DATA_ENV",
    "SegFolder",
    "camvid",
    "cityscapes",
    "default_data_root",
    "find_pairs",
    "platform_data_dir",
    "require_data_root",
    "sequence_of",
]

_IMAGE_EXTS = (".jpg", ".jpeg", ".png")
PathLike = str | os.PathLike


DATA_ENV = "IFA_RT_DATA"


def platform_data_dir() -> Path:
    """The per-user data folder: $XDG_DATA_HOME/ifa_rt/data, else ~/.local/share/ifa_rt/data."""
    # The same stdlib XDG rule as the compiled-package cache (deploy/aoti.cache_dir): the
    # runtime is Linux-first, and one rule needs no platformdirs dependency.
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "ifa_rt" / "data"


def default_data_root(root: PathLike | None = None) -> Path:
    """Data root: the argument, else env `IFA_RT_DATA`, else `platform_data_dir()`.

    Never derived from the package's location: installed from a wheel, a folder beside the
    package is not a data folder. Whether it exists is `require_data_root`'s question.
    """
    if root is not None:
        return Path(root)
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return platform_data_dir()


def require_data_root(root: PathLike | None = None, where: str = "data") -> Path:
    """`default_data_root(root)`, or FileNotFoundError naming the folder, where the name came
    from and how to set it, when that folder does not exist."""
    path = default_data_root(root)
    if path.is_dir():
        return path
    if root is not None:
        origin = "the folder given"
    elif os.environ.get(DATA_ENV):
        origin = f"from ${DATA_ENV}"
    else:
        origin = f"the default when ${DATA_ENV} is unset"
    raise FileNotFoundError(
        f"{where}: expected a data folder at '{path}' ({origin}), it does not exist; "
        f"set {DATA_ENV}=/path/to/data (the folder holding camvid/ or cityscapes_sample/) "
        "or pass the folder explicitly"
    )


def _require_dir(path: Path, where: str) -> None:
    """Raise FileNotFoundError naming the folder when it is missing."""
    if not path.is_dir():
        raise FileNotFoundError(f"{where}: expected folder '{path}', it does not exist")


def sequence_of(image: Path, layout: str) -> str:
    """The recording an image belongs to: CamVid's stem prefix (0006R0), Cityscapes' city folder."""
    return image.parent.name if layout == "cityscapes" else image.stem.split("_")[0]


def find_pairs(layout: str, root: Path, split: str) -> list[tuple[Path, Path]]:
    """List (image, label) paths for `layout` 'camvid' or 'cityscapes'; each image needs a label.

    `split` may join several folders with '+' ("train+val"), listed in that order.
    """
    if "+" in split:
        return [pair for part in split.split("+") for pair in find_pairs(layout, root, part)]
    where = f"{layout} reader (split {split!r})"
    pairs: list[tuple[Path, Path]] = []
    if layout == "camvid":
        img_dir, lbl_dir = root / "images" / split, root / "labels" / split
        _require_dir(img_dir, where)
        _require_dir(lbl_dir, where)
        for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS):
            pairs.append((img, lbl_dir / (img.stem + ".png")))
    elif layout == "cityscapes":
        img_dir, lbl_dir = root / "leftImg8bit" / split, root / "gtFine" / split
        _require_dir(img_dir, where)
        _require_dir(lbl_dir, where)
        for img in sorted(img_dir.glob("*/*_leftImg8bit.png")):
            stem = img.name[: -len("_leftImg8bit.png")]
            pairs.append((img, lbl_dir / img.parent.name / f"{stem}_gtFine_labelTrainIds.png"))
    else:
        raise ValueError(f"find_pairs: 'layout': expected 'camvid' or 'cityscapes', got {layout!r}")
    if not pairs:
        raise FileNotFoundError(f"{where}: no images found under '{img_dir}'")
    for img, lbl in pairs:
        if not lbl.is_file():
            raise FileNotFoundError(f"{where}: image '{img}' has no label, expected '{lbl}'")
    return pairs


class SegFolder:
    """A segmentation split on disk; item i is `transform(image HxWx3 uint8, label HxW uint8)`.

    Labels are train ids (void values mapped to 255); a value outside [0, C) ∪ {255} raises
    a ValueError naming the file. `cache=True` keeps decoded pairs in memory (small sets).
    """

    def __init__(
        self,
        info: DatasetInfo,
        root: PathLike,
        split: str,
        layout: str,
        transform: Callable | None = None,
        cache: bool = False,
    ) -> None:
        self.info = info
        self.root = Path(root)
        self.split = split
        self.layout = layout
        self.pairs = find_pairs(layout, self.root, split)
        self.transform = transform
        self._cache: dict | None = {} if cache else None
        # Lookup table raw value -> train id, built once from the facts.
        lut = np.full(256, -1, dtype=np.int16)
        lut[: info.num_classes] = np.arange(info.num_classes)
        lut[IGNORE_INDEX] = IGNORE_INDEX
        for v in info.void_values:
            lut[v] = IGNORE_INDEX
        self._lut = lut

    def __len__(self) -> int:
        """Number of (image, label) pairs."""
        return len(self.pairs)

    def sequences(self) -> list[str]:
        """The recordings in this split, in first-seen order."""
        return list(dict.fromkeys(sequence_of(img, self.layout) for img, _ in self.pairs))

    def keep_sequences(self, names: Sequence[str], keep: bool = True) -> SegFolder:
        """Keep only (keep=True) or drop (keep=False) the frames of the named recordings.

        Validating on a whole recording held out of training is the honest check: frames of
        one recording are near-duplicates of their neighbours.
        """
        unknown = sorted(set(names) - set(self.sequences()))
        if unknown:
            raise ValueError(
                f"SegFolder: split {self.split!r}: expected sequences among "
                f"{self.sequences()}, got {unknown}"
            )
        if self._cache:
            raise RuntimeError("SegFolder.keep_sequences: call it before reading any item")
        self.pairs = [
            (img, lbl)
            for img, lbl in self.pairs
            if (sequence_of(img, self.layout) in names) == keep
        ]
        return self

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Decoded pair i: RGB uint8 [H,W,3] and train-id uint8 [H,W] (255 = ignore)."""
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        img_path, lbl_path = self.pairs[i]
        image = np.asarray(Image.open(img_path).convert("RGB"))
        raw = np.asarray(Image.open(lbl_path))
        if raw.ndim != 2:
            raise ValueError(
                f"SegFolder: label '{lbl_path}': expected a single-channel map, "
                f"got shape {raw.shape}"
            )
        if raw.shape != image.shape[:2]:
            raise ValueError(
                f"SegFolder: label '{lbl_path}': expected size {image.shape[:2]} "
                f"of its image, got {raw.shape}"
            )
        mapped = self._lut[raw]
        if (mapped < 0).any():
            bad = sorted(set(np.unique(raw[mapped < 0]).tolist()))
            raise ValueError(
                f"SegFolder: label '{lbl_path}': expected values in [0, {self.info.num_classes})"
                f" or void {list(self.info.void_values) + [IGNORE_INDEX]}, got {bad[:10]}"
            )
        pair = (image, mapped.astype(np.uint8))
        if self._cache is not None:
            self._cache[i] = pair
        return pair

    def __getitem__(self, i: int):
        """Pair i after the transform (raw arrays when there is none)."""
        image, label = self.read(i)
        return self.transform(image, label) if self.transform else (image, label)


def camvid(
    split: str, root: PathLike | None = None, transform: Callable | None = None, cache: bool = False
) -> SegFolder:
    """CamVid (11 classes) under `<root>/camvid` (or `root` itself if it has `images/`)."""
    base = require_data_root(root, f"camvid reader (split {split!r})")
    if not (base / "images").is_dir() and (base / "camvid").is_dir():
        base = base / "camvid"
    return SegFolder(dataset_info("camvid"), base, split, "camvid", transform, cache)


def cityscapes(
    split: str, root: PathLike | None = None, transform: Callable | None = None, cache: bool = False
) -> SegFolder:
    """Cityscapes layout (19 train ids) under `root` (or `<root>/cityscapes_sample`)."""
    base = require_data_root(root, f"cityscapes reader (split {split!r})")
    if not (base / "leftImg8bit").is_dir():
        for sub in ("cityscapes", "cityscapes_sample"):
            if (base / sub / "leftImg8bit").is_dir():
                base = base / sub
                break
    return SegFolder(dataset_info("cityscapes"), base, split, "cityscapes", transform, cache)
