"""Training pieces (OHEM, poly lr, parameter groups) and short real runs: the loss falls,
resume continues exactly, the final checkpoint loads."""

import csv

import pytest
import torch

from ifa_rt.data import default_data_root
from ifa_rt.training import TrainConfig, train
from ifa_rt.training.objective import ohem_cross_entropy, param_groups, poly_lr

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


def _config(out, **extra):
    """A tiny run: 4 images, small crops, no validation."""
    return TrainConfig(
        preset="camvid-lite0",
        pretrained=True,
        data_root=str(DATA),
        train_limit=4,
        crop=(64, 96),
        scale=(0.25, 0.3),
        batch=2,
        optimizer="adamw",
        lr=2e-3,
        min_kept=1000,
        val_every=0,
        device="cpu",
        threads=2,
        no_progress=True,
        out=str(out),
        **extra,
    )


def _losses(out):
    with open(out / "train_log.csv") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


@needs_data
def test_short_run_reduces_loss_and_saves_checkpoint(tmp_path):
    train(_config(tmp_path, steps=24, ckpt_every=0))
    losses = _losses(tmp_path)
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < 0.8 * sum(losses[:4]) / 4, losses
    from ifa_rt.deploy.checkpoint import load_checkpoint

    model = load_checkpoint(str(tmp_path / "final.pt"))
    assert model.cfg.num_classes == 11


@needs_data
def test_resume_continues_exactly(tmp_path):
    straight, split = tmp_path / "a", tmp_path / "b"
    train(_config(straight, steps=6, ckpt_every=0))
    assert train(_config(split, steps=6, ckpt_every=0, stop_at=3)) == {}
    assert len(_losses(split)) == 3 and not (split / "final.pt").exists()
    train(_config(split, steps=6, ckpt_every=0))  # resumes from split/last.pt
    a, b = _losses(straight), _losses(split)
    assert len(b) == 6 and a == b
    # Bit for bit: RNGs, batch order, optimiser and scaler all continue where they stopped.
    weights_a = torch.load(straight / "final.pt", weights_only=True)["state_dict"]
    weights_b = torch.load(split / "final.pt", weights_only=True)["state_dict"]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


@needs_data
def test_missing_resume_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(_config(tmp_path, steps=1, resume=str(tmp_path / "nope.pt")))
