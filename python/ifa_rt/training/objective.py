"""What training minimises and at what pace: OHEM cross-entropy, the poly learning rate with
warm-up, and the parameter groups that give the decoder 10x the encoder's rate (docs/model.md §1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data import IGNORE_INDEX

__all__ = ["ohem_cross_entropy", "poly_lr", "param_groups"]


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    thresh: float = 0.7,
    min_kept: int = 100000,
    weight: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Online hard example mining CE: keep pixels whose true-class prob ≤ max(thresh, p_k).

    p_k is the min_kept-th smallest true-class probability, so at least min_kept (valid)
    pixels always contribute; min_kept=0 means threshold only.
    """
    pix = F.cross_entropy(
        logits, target, weight=weight, ignore_index=ignore_index, reduction="none"
    )
    valid = target != ignore_index
    n_valid = int(valid.sum())
    if n_valid == 0:
        return logits.sum() * 0.0
    with torch.no_grad():
        safe = target.clone()
        safe[~valid] = 0
        prob = logits.detach().float().softmax(1).gather(1, safe.unsqueeze(1)).squeeze(1)
        thr = thresh
        if min_kept > 0:
            k = min(n_valid, min_kept)
            thr = max(thresh, float(prob[valid].kthvalue(k).values))
        keep = valid & (prob <= thr)
    if weight is not None:
        denom = weight[target[keep]].sum().clamp_min(1e-12)
        return pix[keep].sum() / denom
    return pix[keep].mean()


def poly_lr(base: float, step: int, total: int, power: float = 0.9, warmup: int = 0) -> float:
    """Poly schedule base·(1 − step/total)^power after an optional linear warm-up."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    return base * max(0.0, 1 - step / max(1, total)) ** power


def param_groups(model: torch.nn.Module, lr: float, head_mult: float = 10.0) -> list[dict]:
    """Encoder at lr, everything else (neck, head, aux) at head_mult × lr."""
    enc = {id(p) for p in model.encoder.parameters()}
    rest = [p for p in model.parameters() if id(p) not in enc and p.requires_grad]
    return [
        {
            "params": [p for p in model.encoder.parameters() if p.requires_grad],
            "lr": lr,
            "lr_mult": 1.0,
        },
        {"params": rest, "lr": lr * head_mult, "lr_mult": head_mult},
    ]
