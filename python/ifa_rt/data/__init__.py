"""Segmentation data: dataset facts, folder readers (CamVid, Cityscapes layout), transforms."""

from .facts import DATASETS, IGNORE_INDEX, MEAN, STD, DatasetInfo, dataset_info
from .folders import SegFolder, camvid, cityscapes, default_data_root, find_pairs, sequence_of
from .transforms import (
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHFlip,
    RandomScale,
    Resize,
    ToTensor,
    eval_transform,
    normalize,
    train_transform,
)

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "MEAN",
    "STD",
    "DatasetInfo",
    "dataset_info",
    "SegFolder",
    "camvid",
    "cityscapes",
    "default_data_root",
    "find_pairs",
    "sequence_of",
    "ColorJitter",
    "Compose",
    "RandomCrop",
    "RandomHFlip",
    "RandomScale",
    "Resize",
    "ToTensor",
    "eval_transform",
    "normalize",
    "train_transform",
]
