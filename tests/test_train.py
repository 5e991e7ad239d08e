"""Training pieces (OHEM, poly lr, parameter groups) and short real runs: the loss falls,
resume continues exactly, the final checkpoint loads."""

import argparse
import csv

import pytest
import torch

from ifa_rt.cli.train import configure_parser
from ifa_rt.data import default_data_root
from ifa_rt.train import ohem_cross_entropy, param_groups, poly_lr, train

DATA = default_data_root()
needs_data = pytest.mark.skipif(
    not (DATA / "camvid").is_dir(), reason=f"no data at {DATA} (set IFA_RT_DATA)"
)


def test_ohem_keeps_hard_pixels_and_ignores_255():
    # Two classes; pixel 0 easy (p≈0.98), pixel 1 hard (p≈0.12), pixel 2 ignored.
    logits = torch.tensor([[4.0, -2.0, 0.0], [0.0, 0.0, 0.0]]).view(1, 2, 1, 3)
    target = torch.tensor([[[0, 0, 255]]])
    hard = torch.nn.functional.cross_entropy(logits[..., 1:2], target[..., 1:2])
    torch.testing.assert_close(ohem_cross_entropy(logits, target, 0.7, min_kept=0), hard)
    both = torch.nn.functional.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(ohem_cross_entropy(logits, target, 0.7, min_kept=2), both)
    empty = ohem_cross_entropy(logits.requires_grad_(), torch.full_like(target, 255))
    assert empty.item() == 0.0 and empty.requires_grad


def test_ohem_class_weights_are_a_weighted_mean():
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    w = torch.tensor([1.0, 2.0, 3.0])
    ref = torch.nn.functional.cross_entropy(logits, target, weight=w)
    torch.testing.assert_close(ohem_cross_entropy(logits, target, 1.0, 0, w), ref)


def test_poly_lr_and_warmup():
    assert poly_lr(0.01, 0, 100) == 0.01
    assert poly_lr(0.01, 50, 100) == pytest.approx(0.01 * 0.5**0.9)
    assert poly_lr(0.01, 100, 100) == 0.0
    assert poly_lr(0.01, 0, 100, warmup=10) == pytest.approx(0.001)


def test_param_groups_give_decoder_ten_times_lr():
    from ifa_rt.model import build_model

    m = build_model("camvid-lite0", pretrained_backbone=False)
    g = param_groups(m, 0.01)
    assert g[0]["lr"] == 0.01 and g[1]["lr"] == pytest.approx(0.1)
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    assert sum(p.numel() for p in g[0]["params"]) == n_enc
    assert sum(p.numel() for grp in g for p in grp["params"]) == sum(
        p.numel() for p in m.parameters()
    )


def _args(out, *extra):
    p = argparse.ArgumentParser()
    configure_parser(p)
    return p.parse_args(
        [
            "--preset",
            "camvid-lite0",
            "--pretrained",
            "true",
            "--data-root",
            str(DATA),
            "--train-limit",
            "4",
            "--crop",
            "64",
            "96",
            "--scale",
            "0.25",
            "0.3",
            "--batch",
            "2",
            "--optimizer",
            "adamw",
            "--lr",
            "2e-3",
            "--min-kept",
            "1000",
            "--val-every",
            "0",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ]
    )


def _losses(out):
    with open(out / "train_log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@needs_data
def test_short_run_reduces_loss_and_saves_checkpoint(tmp_path):
    train(_args(tmp_path, "--steps", "24", "--ckpt-every", "0"))
    losses = _losses(tmp_path)
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    from ifa_rt.deploy.checkpoint import load_checkpoint

    model = load_checkpoint(str(tmp_path / "final.pt"))
    assert model.cfg.num_classes == 11


@needs_data
def test_resume_continues_exactly(tmp_path):
    straight, split = tmp_path / "a", tmp_path / "b"
    train(_args(straight, "--steps", "6", "--ckpt-every", "0"))
    assert train(_args(split, "--steps", "6", "--ckpt-every", "0", "--stop-at", "3")) == {}
    assert len(_losses(split)) == 3 and not (split / "final.pt").exists()
    train(_args(split, "--steps", "6", "--ckpt-every", "0"))  # resumes from split/last.pt
    a, b = _losses(straight), _losses(split)
    assert len(b) == 6
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=1e-5)


@needs_data
def test_missing_resume_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_args(tmp_path, "--steps", "1", "--resume", str(tmp_path / "nope.pt")))
