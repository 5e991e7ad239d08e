"""Shared fixtures: the real data folder (../shared/data or $IFA_RT_DATA) and real images."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Hermetic and fast: compiled packages go to this run's own cache, and no Segmenter starts a
# background compile unless its test asks for one (tests/test_tier_up.py). Subprocesses (CLI
# tests) inherit both.
os.environ["IFA_RT_CACHE"] = tempfile.mkdtemp(prefix="ifa_rt-test-cache-")
os.environ["IFA_RT_TIER_UP"] = "0"


def data_root() -> Path:
    """The real-data folder: $IFA_RT_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("IFA_RT_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def camvid_root() -> Path:
    """CamVid folder; tests that need it skip with a reason when it is absent."""
    root = data_root() / "camvid"
    if not (root / "images" / "val").is_dir():
        pytest.skip(f"CamVid data not found at {root} (set IFA_RT_DATA)")
    return root


@pytest.fixture(scope="session")
def camvid_val_paths(camvid_root: Path) -> list[Path]:
    """Sorted CamVid val image paths."""
    return sorted((camvid_root / "images" / "val").glob("*.jpg"))


@pytest.fixture(scope="session")
def real_image(camvid_val_paths):
    """Factory: a real CamVid val image as uint8 H×W×3, resized to (height, width) if given."""

    def load(index: int = 0, size: tuple[int, int] | None = None) -> np.ndarray:
        img = Image.open(camvid_val_paths[index]).convert("RGB")
        if size is not None:
            img = img.resize((size[1], size[0]), Image.BILINEAR)
        return np.array(img)  # a writable copy

    return load


@pytest.fixture(scope="session")
def tiny() -> Path:
    """The 5-class fixture artifact (tests/fixtures/make_fixtures.py), built once per run.

    Modules that need another `tiny` (a freshly exported one, or a str path) define their own.
    """
    from _reliability import fixture_dir

    return fixture_dir() / "tiny.ifa.pt"
