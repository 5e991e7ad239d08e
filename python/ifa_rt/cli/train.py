"""`ifa-rt train`: every training setting as a flag, or all of them from a recipe (--config)."""

from __future__ import annotations

import argparse

import torch

from ..recipes import load_recipe, recipe_path
from ..train import train


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
                    raise ValueError(
                        f"recipe: unknown setting '{key}'; expected one of "
                        f"{sorted(d.replace('_', '-') for d in by_dest)}"
                    )
                setattr(namespace, dest, _convert(by_dest[dest], key, value))
        except (ValueError, FileNotFoundError, argparse.ArgumentTypeError) as exc:
            parser.error(str(exc))
        setattr(namespace, self.dest, str(recipe_path(values)))


def _bool(s: str) -> bool:
    """Parse true/false style flags."""
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Arguments of `ifa-rt train`."""
    a = parser.add_argument
    a(
        "--config",
        action=ConfigAction,
        default=None,
        metavar="RECIPE",
        help="a bundled recipe name (camvid-lite0) or a TOML file of these settings; "
        "flags after it override it",
    )
    a("--preset", default="camvid-lite0", help="model preset, e.g. camvid-lite0, camvid-r18")
    a(
        "--pretrained",
        type=_bool,
        default=None,
        help="ImageNet encoder weights true/false (offline, Lite0 only); default: the preset's",
    )
    a("--overrides", default=None, help="JSON dict of config overrides for build_model")
    a(
        "--aux",
        type=_bool,
        default=None,
        help="enable/disable the aux head (true/false); default: the preset's",
    )
    a("--dataset", default="camvid", choices=["camvid", "cityscapes"])
    a("--data-root", default=None, help="default: $IFA_RT_DATA or ../shared/data")
    a("--train-split", default="train", help="folder(s) to train on, e.g. train or train+val")
    a("--val-split", default="val")
    a(
        "--holdout",
        nargs="+",
        default=None,
        metavar="SEQ",
        help="validate on these whole recordings of the training split (e.g. 0006R0), "
        "kept out of training; replaces --val-split",
    )
    a("--train-limit", type=int, default=0, help="use only the first N training images")
    a("--crop", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    a("--scale", type=float, nargs=2, default=[0.5, 1.0], metavar=("MIN", "MAX"))
    a(
        "--color-jitter",
        type=float,
        default=0.0,
        help="brightness/contrast/saturation jitter strength (0: off)",
    )
    a("--batch", type=int, default=8)
    a("--epochs", type=int, default=10)
    a("--steps", type=int, default=0, help="total steps (overrides --epochs)")
    a("--optimizer", default="adamw", choices=["sgd", "adamw"])
    a("--lr", type=float, default=1e-3)
    a("--head-lr-mult", type=float, default=10.0)
    a("--weight-decay", type=float, default=1e-4)
    a("--warmup", type=int, default=0, help="linear warm-up steps")
    a("--ohem-thresh", type=float, default=0.7)
    a("--min-kept", type=int, default=100000)
    a("--class-weights", type=float, nargs="+", default=None)
    a("--aux-weight", type=float, default=0.4)
    a("--ckpt-every", type=int, default=50, help="save last.pt every N steps")
    a("--val-every", type=int, default=1, help="validate every N epochs (0: never)")
    a("--val-limit", type=int, default=None, help="validate on the first N val images")
    a(
        "--init",
        default=None,
        metavar="CHECKPOINT",
        help="start from this checkpoint's weights (fresh optimiser and schedule), e.g. to "
        "continue a held-out-validated run on every frame",
    )
    a("--resume", default=None, help="checkpoint to resume (default: <out>/last.pt if present)")
    a("--no-auto-resume", action="store_true")
    a(
        "--stop-at",
        type=int,
        default=0,
        help="checkpoint and stop at this step (for time-limited jobs); rerun to resume",
    )
    a("--out", default="runs/camvid")
    a("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    a(
        "--amp",
        default="auto",
        choices=["auto", "off", "bf16", "fp16"],
        help="autocast precision (weights stay fp32); auto: fp16 on CUDA, off on CPU",
    )
    a("--seed", type=int, default=0)
    a("--no-progress", action="store_true")


def run_cli(args: argparse.Namespace) -> int:
    """Run `ifa-rt train`."""
    final = train(args)
    if final:
        print(f"final val mIoU {final['miou']:.4f} pixel acc {final['pixel_accuracy']:.4f}")
    return 0
