"""Training recipes: one TOML file per bundled model, holding every `ifa-rt train` argument."""
from __future__ import annotations

import argparse
from pathlib import Path

import tomllib

__all__ = ["recipe_path", "load_recipe", "ConfigAction"]

_HERE = Path(__file__).resolve().parent


def recipe_path(name_or_path: str) -> Path:
    """A bundled recipe by name ('camvid-lite0') or any TOML file by path."""
    bundled = _HERE / f"{name_or_path}.toml"
    if bundled.is_file():
        return bundled
    path = Path(name_or_path)
    if not path.is_file():
        names = sorted(p.stem for p in _HERE.glob("*.toml"))
        raise FileNotFoundError(f"recipe: expected a file or one of {names}, "
                                f"got '{name_or_path}'")
    return path


def load_recipe(name_or_path: str) -> dict:
    """The recipe's settings as a flat dict (keys as in the CLI, dashes or underscores)."""
    path = recipe_path(name_or_path)
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"recipe '{path}': {exc}") from None


def _convert(action: argparse.Action, key: str, value):
    """Check one recipe value against its argument (type, arity, choices) and convert it."""
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if many != isinstance(value, list):
        want = "a list" if many else "a single value"
        raise ValueError(f"recipe: '{key}': expected {want}, got {value!r}")
    items = value if many else [value]
    if action.type is not None:
        items = [action.type(str(v).lower() if isinstance(v, bool) else v) for v in items]
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise ValueError(f"recipe: '{key}': expected {action.nargs} values, got {len(items)}")
    for v in items:
        if action.choices is not None and v not in action.choices:
            raise ValueError(f"recipe: '{key}': expected one of {list(action.choices)}, got {v!r}")
    return items if many else items[0]


class ConfigAction(argparse.Action):
    """`--config RECIPE`: set every argument the recipe names; flags after it override it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        """Load the recipe into the namespace, refusing unknown keys."""
        by_dest = {a.dest: a for a in parser._actions if a.dest not in ("help", self.dest)}
        try:
            recipe = load_recipe(values)
            for key, value in recipe.items():
                dest = key.replace("-", "_")
                if dest not in by_dest:
                    raise ValueError(f"recipe: unknown setting '{key}'; expected one of "
                                     f"{sorted(d.replace('_', '-') for d in by_dest)}")
                setattr(namespace, dest, _convert(by_dest[dest], key, value))
        except (ValueError, FileNotFoundError, argparse.ArgumentTypeError) as exc:
            parser.error(str(exc))
        setattr(namespace, self.dest, str(recipe_path(values)))
