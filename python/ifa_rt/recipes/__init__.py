"""Training recipes: one TOML file per bundled model, holding every `ifa-rt train` argument."""

from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["recipe_path", "load_recipe"]

_HERE = Path(__file__).resolve().parent


def recipe_path(name_or_path: str) -> Path:
    """A bundled recipe by name ('camvid-lite0') or any TOML file by path."""
    bundled = _HERE / f"{name_or_path}.toml"
    if bundled.is_file():
        return bundled
    path = Path(name_or_path)
    if not path.is_file():
        names = sorted(p.stem for p in _HERE.glob("*.toml"))
        raise FileNotFoundError(f"recipe: expected a file or one of {names}, got '{name_or_path}'")
    return path


def load_recipe(name_or_path: str) -> dict:
    """The recipe's settings as a flat dict (keys as in the CLI, dashes or underscores);
    `base = "other"` starts from another recipe's settings."""
    path = recipe_path(name_or_path)
    with open(path, "rb") as f:
        try:
            recipe = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"recipe '{path}': {exc}") from None
    base = recipe.pop("base", None)
    if base is None:
        return recipe
    if not isinstance(base, str) or recipe_path(base) == path:
        raise ValueError(f"recipe '{path}': 'base': expected another recipe's name, got {base!r}")
    # A stage that builds on another recipe: its settings, then this file's on top.
    return {**load_recipe(base), **recipe}
