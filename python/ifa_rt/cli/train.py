"""`ifa-rt train`: every training setting as a flag, or all of them from a recipe (--config).

The flags are made from `TrainConfig`'s fields (name, type, default, help), so a default is
stated once, in `ifa_rt/training/config.py`.
"""

from __future__ import annotations

import argparse
import json

from ..recipes import recipe_path
from ..training import TrainConfig, train
from ..training.config import Setting, recipe_settings, settings


class ConfigAction(argparse.Action):
    """`--config RECIPE`: set every setting the recipe names; flags after it override it."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        """Load the recipe into the namespace; an unknown or mistyped setting is a usage error."""
        try:
            for name, value in recipe_settings(values).items():
                setattr(namespace, name, value)
        except (ValueError, FileNotFoundError) as exc:
            parser.error(str(exc))
        setattr(namespace, self.dest, str(recipe_path(values)))


def _bool(s: str) -> bool:
    """Parse true/false style flags."""
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _json_table(s: str) -> dict:
    """Parse a JSON object."""
    try:
        value = json.loads(s)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r} ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {s!r}")
    return value


_PARSERS = {bool: _bool, int: int, float: float, str: str, dict: _json_table}


def _flag(parser: argparse.ArgumentParser, s: Setting) -> None:
    """Add the flag of one TrainConfig field."""
    kw: dict = {"dest": s.name, "default": s.default, "help": s.help}
    if s.name == "recipe":
        kw.update(action=ConfigAction, metavar=s.metavar)
    elif s.kind is bool and not (s.optional or s.is_list):
        kw.update(action="store_true")  # an off-by-default switch: the flag alone turns it on
    else:
        kw.update(type=_PARSERS[s.kind], metavar=s.metavar)
        if s.is_list:
            kw.update(nargs=s.length or "+", default=list(s.default) if s.default else s.default)
        if s.choices:
            kw.update(choices=list(s.choices))
    parser.add_argument(s.flag, **kw)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt train`: one flag per TrainConfig field."""
    for s in settings():
        _flag(parser, s)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed `ifa-rt train` arguments (ValueError for a bad value)."""
    return TrainConfig(**{s.name: getattr(args, s.name) for s in settings()})


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt train`."""
    final = train(config_from_args(args))
    if final:
        print(f"final val mIoU {final['miou']:.4f} pixel acc {final['pixel_accuracy']:.4f}")
    return 0
