"""The images a run trains and validates on, and the order it sees them in."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..data import camvid, cityscapes, train_transform
from .config import TrainConfig

__all__ = ["datasets", "batches"]


def datasets(config: TrainConfig):
    """Training and validation splits; `holdout` validates on whole recordings kept out."""
    reader = camvid if config.dataset == "camvid" else cityscapes
    transform = train_transform(config.crop, config.scale, config.color_jitter)
    train_set = reader(config.train_split, config.data_root, transform, cache=True)
    val_set = None
    if config.holdout:
        val_set = reader(config.train_split, config.data_root, cache=True)
        val_set.keep_sequences(config.holdout, keep=True)
        train_set.keep_sequences(config.holdout, keep=False)
    elif config.val_every:
        val_set = reader(config.val_split, config.data_root, cache=True)
    if config.train_limit:
        train_set.pairs = train_set.pairs[: config.train_limit]
    if not config.val_every:
        val_set = None
    return train_set, val_set


def batches(dataset, batch: int, seed: int, epoch: int, skip: int) -> Iterator:
    """Shuffled batches of one epoch (order fixed by seed+epoch), skipping the first `skip`."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(dataset), generator=g).tolist()
    nb = len(order) // batch  # drop the last partial batch: BN needs steady batch sizes
    for b in range(skip, nb):
        items = [dataset[i] for i in order[b * batch : (b + 1) * batch]]
        yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])
