"""Bundled models: artifacts shipped inside the package as `ifa_rt/bundled/<name>.ifa.pt`,
with the training checkpoint they were exported from as `<name>.ckpt.pt`."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["bundled_models", "is_bundled", "resolve"]

BUNDLED_DIR = Path(__file__).resolve().parent
SUFFIX = ".ifa.pt"
CHECKPOINT_SUFFIX = ".ckpt.pt"  # the training checkpoint shipped beside an artifact


def bundled_models() -> list[str]:
    """Names of the artifacts bundled with the package (e.g. ["camvid"])."""
    return sorted(p.name[: -len(SUFFIX)] for p in BUNDLED_DIR.glob(f"*{SUFFIX}") if p.is_file())


def is_bundled(path: str | os.PathLike) -> bool:
    """Whether `path` is a file of the bundled folder (read-only in an installed package)."""
    return Path(path).resolve().parent == BUNDLED_DIR.resolve()


def _looks_like_path(model: str) -> bool:
    return os.sep in model or "/" in model or model.endswith((".pt", ".pth", ".pt2"))


def resolve(model: str | os.PathLike, where: str = "Segmenter") -> Path:
    """The artifact path for a bundled model name or a path.

    Raises TypeError for a non-string, ValueError for an unknown name or a missing file (the
    message lists the bundled names).
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str):
        raise TypeError(
            f"{where}: 'model': expected an artifact path or a bundled model name, "
            f"got {type(model).__name__}"
        )
    names = bundled_models()
    listing = ", ".join(names) if names else "none bundled"
    if not _looks_like_path(model):
        path = BUNDLED_DIR / f"{model}{SUFFIX}"
        if path.is_file():
            return path
        if not Path(model).is_file():
            raise ValueError(
                f"{where}: 'model': expected a bundled model name ({listing}) "
                f"or an artifact path, got '{model}'"
            )
    path = Path(model)
    if not path.is_file():
        raise ValueError(
            f"{where}: 'model': expected an existing artifact file or a bundled model name "
            f"({listing}), got '{model}' (no such file)"
        )
    return path
