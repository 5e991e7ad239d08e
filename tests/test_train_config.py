"""TrainConfig: every training default stated once. `ifa-rt train` has a flag for every field
(its defaults are the dataclass's), recipes resolve their base and name a bad key or value."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from ifa_rt.cli.train import config_from_args, configure_parser
from ifa_rt.recipes import load_recipe
from ifa_rt.training import TrainConfig
from ifa_rt.training.config import settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser


def test_every_field_has_a_flag_and_the_cli_defaults_are_the_dataclass_defaults():
    parser = _parser()
    flags = {a.dest: a.option_strings for a in parser._actions if a.dest != "help"}
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(flags) == sorted(fields)
    assert flags["recipe"] == ["--config"] and flags["head_lr_mult"] == ["--head-lr-mult"]
    for s in settings():
        assert s.help, f"'{s.name}' has no help"
        assert flags[s.name] == [s.flag]
    assert config_from_args(parser.parse_args([])) == TrainConfig()
    assert TrainConfig().batch == 8 and TrainConfig().crop == (240, 320)


def test_flags_convert_to_the_field_types():
    args = ["--crop", "96", "128", "--holdout", "0006R0", "--pretrained", "false"]
    args += ["--overrides", '{"aux": false}', "--no-progress", "--val-limit", "3"]
    config = config_from_args(_parser().parse_args(args))
    assert config.crop == (96, 128) and config.holdout == ["0006R0"]
    assert config.pretrained is False and config.overrides == {"aux": False}
    assert config.no_progress is True and config.val_limit == 3
    with pytest.raises(SystemExit):
        _parser().parse_args(["--overrides", "[1]"])  # a JSON list is not a table


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch": 0}, "TrainConfig: 'batch': expected ≥ 1, got 0"),
        ({"crop": (1, 2, 3)}, "TrainConfig: 'crop': expected 2 values, got 3"),
        ({"optimizer": "lion"}, "TrainConfig: 'optimizer': expected one of ['sgd', 'adamw']"),
        ({"lr": float("nan")}, "TrainConfig: 'lr': expected a number, got nan"),
        ({"steps": 2.5}, "TrainConfig: 'steps': expected an integer, got 2.5"),
        ({"seed": True}, "TrainConfig: 'seed': expected an integer, got True"),
        ({"preset": None}, "TrainConfig: 'preset': expected a string, got None"),
        ({"holdout": "0006R0"}, "TrainConfig: 'holdout': expected a list, got '0006R0'"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(kwargs, message):
    with pytest.raises(ValueError) as exc:
        TrainConfig(**kwargs)
    assert message in str(exc.value)


def test_values_are_normalised():
    config = TrainConfig(crop=[64, 96], lr=1, out=Path("runs/x"), class_weights=(1, 2))
    assert config.crop == (64, 96) and config.lr == 1.0 and isinstance(config.lr, float)
    assert config.out == "runs/x" and config.class_weights == [1.0, 2.0]
    assert config.to_dict()["crop"] == [64, 96]  # plain lists in checkpoints


def test_from_recipe_resolves_its_base_recipe():
    stage1 = TrainConfig.from_recipe("camvid-lite0")
    stage2 = TrainConfig.from_recipe("camvid-lite0-all", out="elsewhere")
    assert stage2.crop == stage1.crop == (288, 384)  # from the base recipe
    assert (
        stage2.class_weights == stage1.class_weights == load_recipe("camvid-lite0")["class-weights"]
    )
    assert stage2.lr == 1e-4 and stage2.holdout == [] and stage2.steps == 400  # its own
    assert stage2.init == "runs/camvid/final.pt" and stage2.out == "elsewhere"  # the override
    assert Path(stage2.recipe).name == "camvid-lite0-all.toml"


def test_from_recipe_refuses_an_unknown_key(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('base = "camvid-lite0"\nlearning-rate = 0.1\n')
    with pytest.raises(ValueError, match="recipe: unknown setting 'learning-rate'; expected one"):
        TrainConfig.from_recipe(path)
    with pytest.raises(ValueError, match="from_recipe: unknown setting 'learning_rate'"):
        TrainConfig.from_recipe("camvid-lite0", learning_rate=0.1)
    with pytest.raises(FileNotFoundError, match="expected a file or one of"):
        TrainConfig.from_recipe(tmp_path / "absent.toml")
