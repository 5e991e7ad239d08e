"""The bundled training recipe: `ifa-rt train --config camvid-lite0` end to end in its short form
(a few steps on real CamVid images, the held-out recording validated, the checkpoint exported),
and the recipe file's rules (flags after it win, unknown or mistyped settings are refused)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from ifa_rt.cli import main as cli_main
from ifa_rt.cli.train import config_from_args, configure_parser
from ifa_rt.data import camvid, default_data_root
from ifa_rt.deploy.artifact import load_artifact
from ifa_rt.recipes import load_recipe
from ifa_rt.side_files import file_sha256
from ifa_rt.training import TrainConfig

DATA = default_data_root()
needs_data = pytest.mark.skipif(
    not (DATA / "camvid").is_dir(), reason=f"no data at {DATA} (set IFA_RT_DATA)"
)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(list(argv))


def test_recipe_sets_every_value_and_later_flags_override():
    recipe = load_recipe("camvid-lite0")
    config = config_from_args(_parse("--lr", "9", "--config", "camvid-lite0", "--steps", "7"))
    assert config.steps == 7  # the flag after --config wins
    assert config.lr == recipe["lr"]  # ... and the recipe wins over one before it
    assert list(config.crop) == recipe["crop"] and config.holdout == recipe["holdout"]
    assert config.class_weights == recipe["class-weights"] and config.amp == recipe["amp"]
    assert config.train_split == "train+val" and config.recipe.endswith("camvid-lite0.toml")
    assert config == TrainConfig.from_recipe("camvid-lite0", steps=7)


@pytest.mark.parametrize(
    "text, message",
    [
        ("nonsense = 1\n", "recipe: unknown setting 'nonsense'"),
        ("crop = 288\n", "recipe: 'crop': expected a list, got 288"),
        ("crop = [1, 2, 3]\n", "recipe: 'crop': expected 2 values, got 3"),
        (
            'amp = "int4"\n',
            "recipe: 'amp': expected one of ['auto', 'off', 'bf16', 'fp16'], got 'int4'",
        ),
        ('steps = "many"\n', "recipe: 'steps': expected an integer, got 'many'"),
        ("batch = 0\n", "recipe: 'batch': expected ≥ 1, got 0"),
        ("holdout = [6]\n", "recipe: 'holdout': expected a string, got 6"),
        ("config = 'x'\n", "recipe: unknown setting 'config'"),
        ("steps = \n", "recipe '"),
    ],
)
def test_bad_recipe_is_a_usage_error_naming_the_setting(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exc:
        _parse("--config", str(path))
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_missing_recipe_lists_the_bundled_ones(capsys):
    with pytest.raises(SystemExit):
        _parse("--config", "no-such-recipe")
    assert (
        "expected a file or one of ['camvid-lite0', 'camvid-lite0-all'], got 'no-such-recipe'"
        in capsys.readouterr().err
    )


@needs_data
def test_holdout_keeps_a_whole_recording_out_of_training():
    train = camvid("train+val", DATA).keep_sequences(["0006R0"], keep=False)
    held = camvid("train+val", DATA).keep_sequences(["0006R0"])
    assert train.sequences() == ["0001TP", "0016E5"] and held.sequences() == ["0006R0"]
    assert len(train) + len(held) == len(camvid("train", DATA)) + len(camvid("val", DATA))
    with pytest.raises(ValueError, match=r"expected sequences among \['0001TP'"):
        camvid("train", DATA).keep_sequences(["Seq05VD"])


@needs_data
def test_short_form_of_the_bundled_recipe_trains_and_exports_with_its_facts(tmp_path):
    """The one-command reproduction, cut to 2 steps: train -> checkpoint -> artifact."""
    run = tmp_path / "run"
    assert (
        cli_main(
            [
                "train",
                "--config",
                "camvid-lite0",
                "--steps",
                "2",
                "--crop",
                "96",
                "128",
                "--batch",
                "2",
                "--val-limit",
                "2",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    ckpt = torch.load(run / "final.pt", weights_only=False)
    facts = ckpt["meta"]["training"]
    assert facts["recipe"]["file"] == "camvid-lite0.toml"
    assert 'holdout = ["0006R0"]' in facts["recipe"]["text"]
    assert facts["data"]["holdout_sequences"] == ["0006R0"] and facts["data"]["val_images"] == 101
    assert facts["data"]["train_images"] == 367 and facts["train_seconds"] > 0
    artifact = tmp_path / "model.ifa.pt"
    assert cli_main(["export", "--checkpoint", str(run / "final.pt"), "-o", str(artifact)]) == 0
    _, meta = load_artifact(artifact)
    training = meta["training"]
    assert training["steps"] == 2 and training["recipe"] == {"file": "camvid-lite0.toml"}
    assert training["checkpoint_sha256"] == file_sha256(run / "final.pt")
    assert set(training["validation"]["per_class_iou"]) == set(meta["classes"])
    json.dumps(meta)  # the C++ runtime reads this JSON too
    from ifa_rt import Segmenter

    assert Segmenter(str(artifact)).metadata["training"]["steps"] == 2
    # Stage 2 (camvid-lite0-all): every frame, from stage 1's weights, which it records.
    run2 = tmp_path / "run2"
    args2 = ["train", "--config", "camvid-lite0-all", "--init", str(run / "final.pt")]
    args2 += ["--steps", "2", "--crop", "96", "128", "--batch", "2", "--out", str(run2)]
    assert cli_main([*args2, "--no-progress"]) == 0
    facts2 = torch.load(run2 / "final.pt", weights_only=True)["meta"]["training"]
    assert facts2["data"]["train_images"] == 468 and facts2["data"]["val_images"] == 0
    assert facts2["data"]["train_sequences"] == ["0001TP", "0006R0", "0016E5"]
    assert facts2["init"]["sha256"] == file_sha256(run / "final.pt")
    stage1 = torch.load(run / "final.pt", weights_only=True)["meta"]
    assert facts2["init"]["validation"]["miou"] == stage1["val"]["miou"]
    assert (
        facts2["recipe"]["settings"]["holdout"] == [] and facts2["recipe"]["settings"]["lr"] == 1e-4
    )


def test_a_recipe_builds_on_another():
    stage1, stage2 = load_recipe("camvid-lite0"), load_recipe("camvid-lite0-all")
    assert stage2["crop"] == stage1["crop"] and stage2["class-weights"] == stage1["class-weights"]
    assert stage2["holdout"] == [] and stage2["init"] == "runs/camvid/final.pt"
    assert "base" not in stage2
