"""Dataset facts (classes, palettes, ignore value), defined once for every reader and plot."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IGNORE_INDEX", "MEAN", "STD", "DatasetInfo", "DATASETS", "dataset_info"]

IGNORE_INDEX = 255
# Pre-processing of docs/model.md §1 (RGB 0-255).
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DatasetInfo:
    """Facts of one dataset: class names, RGB palette, and how raw label values map to train ids."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    # Raw label values that mean "ignore" (mapped to IGNORE_INDEX) besides IGNORE_INDEX itself.
    void_values: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        """Number of trained classes (ignore excluded)."""
        return len(self.classes)


DATASETS: dict[str, DatasetInfo] = {
    # Brostow et al. 2008, 11-class SegNet version; raw value 11 = void.
    "camvid": DatasetInfo(
        name="camvid",
        classes=(
            "sky",
            "building",
            "pole",
            "road",
            "pavement",
            "tree",
            "sign-symbol",
            "fence",
            "car",
            "pedestrian",
            "bicyclist",
        ),
        palette=(
            (128, 128, 128),
            (128, 0, 0),
            (192, 192, 128),
            (128, 64, 128),
            (60, 40, 222),
            (128, 128, 0),
            (192, 128, 128),
            (64, 64, 128),
            (64, 0, 128),
            (64, 64, 0),
            (0, 128, 192),
        ),
        void_values=(11,),
    ),
    # Cordts et al. 2016, 19 train ids; 255 = ignore.
    "cityscapes": DatasetInfo(
        name="cityscapes",
        classes=(
            "road",
            "sidewalk",
            "building",
            "wall",
            "fence",
            "pole",
            "traffic light",
            "traffic sign",
            "vegetation",
            "terrain",
            "sky",
            "person",
            "rider",
            "car",
            "truck",
            "bus",
            "train",
            "motorcycle",
            "bicycle",
        ),
        palette=(
            (128, 64, 128),
            (244, 35, 232),
            (70, 70, 70),
            (102, 102, 156),
            (190, 153, 153),
            (153, 153, 153),
            (250, 170, 30),
            (220, 220, 0),
            (107, 142, 35),
            (152, 251, 152),
            (70, 130, 180),
            (220, 20, 60),
            (255, 0, 0),
            (0, 0, 142),
            (0, 0, 70),
            (0, 60, 100),
            (0, 80, 100),
            (0, 0, 230),
            (119, 11, 32),
        ),
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """Look up a dataset's facts by name, with a clear error for an unknown one."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"dataset_info: 'name': expected one of {sorted(DATASETS)}, got {name!r}"
        ) from None
