"""The artifact's module and its loader: what an `.ifa.pt` holds and how Python reads it.

Below every writer and reader of artifacts (export, rebuild, AOTInductor, Triton, int8), so
none of them imports another to get at these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .metadata import EXTRA_FILE, parse_metadata

__all__ = [
    "CoarseSegmenter",
    "ImageSegmenter",
    "labels_from_coarse",
    "load_artifact",
]


class ImageSegmenter(nn.Module):
    """The artifact's module: uint8 RGB NHWC images in, labels (forward) or logits out.

    Normalisation lives in the graph so the runtime knows nothing model-specific. The compute
    dtype follows the `mean` buffer: `.to(torch.bfloat16)` switches precision without re-export.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer(
            "inv_std", (1.0 / torch.tensor(std, dtype=torch.float32)).view(1, 3, 1, 1)
        )
        # Read by runtimes (docs/artifact.md): configure_cache(.., 0) keeps no unplanned size.
        # Artifacts without it evicted the size in use before its entries existed, so 0 kept
        # every size; runtimes pass them 1 instead.
        self.zero_capacity_keeps_none = True

    def _normalized(self, images: Tensor) -> Tensor:
        x = images.permute(0, 3, 1, 2).to(self.mean.dtype)
        return (x - self.mean) * self.inv_std

    def _logits(self, images: Tensor) -> Tensor:
        return self.net(self._normalized(images))

    def forward(self, images: Tensor) -> Tensor:
        """Label map uint8 [B,H,W] for uint8 [B,H,W,3] RGB images."""
        # max(1).indices is argmax(1) exactly (first maximum, NaN wins; tested), and its
        # kernel reduces an NCHW map 2.6-4.6x faster than argmax's.
        return self._logits(images).max(1)[1].to(torch.uint8)

    @torch.jit.export
    def configure_cache(self, planned: list[list[int]], capacity: int) -> None:
        """Runtime hook (docs/artifact.md): keep the per-shape constants of the planned [H, W]
        input sizes, and of at most `capacity` other sizes (least recently used first out)."""
        self.net.configure_cache(planned, capacity, self.mean.dtype, self.mean.device)

    @torch.jit.export
    def logits(self, images: Tensor) -> Tensor:
        """Float32 logits [B,C,H,W] for uint8 [B,H,W,3] RGB images."""
        return self._logits(images).float()


class CoarseSegmenter(ImageSegmenter):
    """What a compiled package's models compute: float32 logits [B,C,h,w] at the head's
    resolution, before the final bilinear upsample. The runtime finishes the labels itself
    (`cpp/src/upsample_labels.cpp`), visiting all classes only near class boundaries; inside
    the graph, the upsample + max over every pixel and class took 22 % of an int8 call
    (docs/bench/profile-camvid-int8-360x480.json). Same parameters and names as
    `ImageSegmenter`, so quantizer module names and int8 calibrations apply unchanged."""

    def forward(self, images: Tensor) -> Tensor:
        """Coarse float32 logits [B,C,h,w] for uint8 [B,H,W,3] RGB images."""
        return self.net.coarse(self._normalized(images)).float()


def labels_from_coarse(out: Tensor, height: int, width: int) -> Tensor:
    """Labels uint8 [B,H,W] of a package model's output: coarse logits are upsampled
    (bilinear, align_corners=True) and reduced like `ImageSegmenter.forward`; labels pass."""
    if out.is_floating_point():
        out = F.interpolate(out, size=[height, width], mode="bilinear", align_corners=True)
        return out.max(1)[1].to(torch.uint8)
    return out


class _Predict(nn.Module):
    """The reference model as is, through its always-a-tensor `predict` method."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.predict(x)

    def configure_cache(
        self, planned: list[list[int]], capacity: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        """Nothing to configure: the reference form caches nothing per shape."""


def load_artifact(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load an artifact in Python with its validated metadata (the C++ runtime does the same)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"artifact '{path}': no such file")
    extra = {EXTRA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except RuntimeError as exc:
        raise ValueError(f"artifact '{path}': not a TorchScript archive: {exc}") from None
    return module, parse_metadata(extra[EXTRA_FILE], source=str(path))
