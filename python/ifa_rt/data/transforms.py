"""Joint image/label transforms for training and evaluation (reference recipe, docs/model.md §1).

Every transform takes and returns (image, label): numpy RGB uint8 [H,W,3] and uint8 [H,W]
until `ToTensor`, which normalises to float [3,H,W] and int64 [H,W].
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from .facts import IGNORE_INDEX, MEAN, STD

__all__ = [
    "Compose",
    "RandomScale",
    "Resize",
    "RandomCrop",
    "RandomHFlip",
    "ColorJitter",
    "ToTensor",
    "train_transform",
    "eval_transform",
    "normalize",
]

Pair = tuple[np.ndarray, np.ndarray]


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms: list[Callable] = list(transforms)

    def __call__(self, image, label):
        """Run the chain on one pair."""
        for t in self.transforms:
            image, label = t(image, label)
        return image, label


def _resize(image: np.ndarray, label: np.ndarray, h: int, w: int) -> Pair:
    """Bilinear for the image, nearest for the label (labels are ids, never blended)."""
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    lbl = np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return img, lbl


class Resize:
    """Resize both to a fixed (h, w)."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, image, label) -> Pair:
        """Resize one pair."""
        return _resize(image, label, *self.size)


class RandomScale:
    """Scale both by a factor drawn uniformly from `scale` (relative to the input size)."""

    def __init__(self, scale: tuple[float, float] = (0.5, 2.0)) -> None:
        self.scale = scale

    def __call__(self, image, label) -> Pair:
        """Rescale one pair."""
        s = random.uniform(*self.scale)
        h, w = label.shape
        return _resize(image, label, max(1, round(h * s)), max(1, round(w * s)))


class RandomCrop:
    """Random (h, w) crop; smaller inputs are padded (image with the mean, label with 255)."""

    def __init__(self, size: tuple[int, int], ignore_index: int = IGNORE_INDEX) -> None:
        self.size = size
        self.ignore_index = ignore_index

    def __call__(self, image, label) -> Pair:
        """Pad if needed, then crop one pair at the same offset."""
        ch, cw = self.size
        h, w = label.shape
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        if ph or pw:
            # Mean padding becomes 0 after normalisation; the label pad is ignored in the loss.
            img = np.empty((h + ph, w + pw, 3), np.uint8)
            img[:] = np.round(MEAN).astype(np.uint8)
            img[:h, :w] = image
            lbl = np.full((h + ph, w + pw), self.ignore_index, np.uint8)
            lbl[:h, :w] = label
            image, label, h, w = img, lbl, h + ph, w + pw
        y, x = random.randint(0, h - ch), random.randint(0, w - cw)
        return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]


class RandomHFlip:
    """Mirror both left-right with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image, label) -> Pair:
        """Maybe flip one pair."""
        if random.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label


class ColorJitter:
    """Random brightness, contrast and saturation factors in [1 − s, 1 + s], in random order.

    A new street is mostly new light (dusk, overcast, another camera): photometric jitter
    is what keeps a model trained on a few recordings from memorising their colours.
    """

    def __init__(self, strength: float = 0.3) -> None:
        self.strength = strength

    def __call__(self, image, label) -> Pair:
        """Jitter one image; the label is untouched."""
        if self.strength <= 0:
            return image, label
        img = image.astype(np.float32)
        ops = [self._brightness, self._contrast, self._saturation]
        random.shuffle(ops)
        for op in ops:
            img = op(img, random.uniform(1 - self.strength, 1 + self.strength))
        return np.clip(img, 0, 255).round().astype(np.uint8), label

    @staticmethod
    def _brightness(img: np.ndarray, f: float) -> np.ndarray:
        return img * f

    @staticmethod
    def _contrast(img: np.ndarray, f: float) -> np.ndarray:
        return (img - img.mean()) * f + img.mean()

    @staticmethod
    def _saturation(img: np.ndarray, f: float) -> np.ndarray:
        grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
        return (img - grey[..., None]) * f + grey[..., None]


def normalize(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 [H,W,3] -> normalised float [3,H,W] (mean/std of docs/model.md §1)."""
    # np.array copies: PIL-decoded arrays are read-only, which torch.from_numpy warns about.
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (x - mean) / std


class ToTensor:
    """Normalise the image to float [3,H,W] and turn the label into int64 [H,W]."""

    def __call__(self, image, label):
        """Convert one pair."""
        return normalize(image), torch.from_numpy(np.array(label, dtype=np.int64))


def train_transform(
    crop: tuple[int, int], scale: tuple[float, float] = (0.5, 2.0), color_jitter: float = 0.0
) -> Compose:
    """Training recipe: random scale, crop (255-padded labels), flip, [jitter,] normalise."""
    steps: list[Callable] = [RandomScale(scale), RandomCrop(crop), RandomHFlip()]
    if color_jitter > 0:
        steps.append(ColorJitter(color_jitter))
    return Compose(steps + [ToTensor()])


def eval_transform() -> Compose:
    """Evaluation: normalise only (full image)."""
    return Compose([ToTensor()])
