"""The training loop (docs/model.md §1 recipe, scaled to the data): SGD/AdamW, poly lr (0.9),
10× lr for neck/head, OHEM cross-entropy (+ 0.4 × aux), periodic resumable checkpoints,
per-epoch validation mIoU, CSV/JSON logs, AMP on CUDA.

`train(config)` sets a run up (`_Run.start`: resume included), steps through epochs
(`_Run.step`), validates at epoch ends (`_Run.validate`) and checkpoints (`_Run.checkpoint`).
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data import dataset_info
from .checkpointing import initialise, resume, save_final, source_commit, training_facts
from .config import TrainConfig
from .datasets import batches, datasets
from .objective import ohem_cross_entropy, param_groups, poly_lr
from .state import TrainState, seed_all

__all__ = ["train"]


def train(config: TrainConfig) -> dict:
    """Train per `config`; returns the final validation metrics ({} when it stopped early at
    `stop_at`, to be resumed by running it again)."""
    run = _Run.start(config)
    try:
        while run.state.step < run.total:
            if run.epoch():
                run.checkpoint()
                run.close()
                print(f"train: stopped at step {run.state.step}; rerun the same command to resume")
                return {}
            if run.validation_due():
                run.validate()
        return run.finish()
    finally:
        run.close()


def _amp_dtype(amp: str, device_type: str) -> torch.dtype | None:
    """Autocast dtype for `amp` on this device; 'auto' is fp16 on CUDA, fp32 on CPU."""
    if amp == "auto":
        amp = "fp16" if device_type == "cuda" else "off"
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _build(config: TrainConfig, num_classes: int) -> torch.nn.Module:
    """The preset's model; `pretrained` (offline ImageNet Lite0 weights) and `aux` override it."""
    from ..model import build_model

    overrides = dict(config.overrides or {})
    if config.aux is not None:
        overrides["aux"] = config.aux
    if config.pretrained is not None:
        overrides["pretrained_backbone"] = config.pretrained
    return build_model(config.preset, num_classes=num_classes, **overrides)


def _make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) or AdamW over the encoder / decoder parameter groups."""
    groups = param_groups(model, config.lr, config.head_lr_mult)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _train_step(
    state: TrainState,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    config: TrainConfig,
) -> float:
    """One step: OHEM CE (+ aux_weight × aux OHEM CE), AMP on CUDA; returns the loss."""
    amp = _amp_dtype(config.amp, x.device.type)
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        out = state.model(x)
    logits, aux = out if isinstance(out, (tuple, list)) else (out, None)
    thresh, min_kept = config.ohem_thresh, config.min_kept
    loss = ohem_cross_entropy(logits.float(), y, thresh, min_kept, weight)
    if aux is not None and config.aux_weight > 0:
        aux = F.interpolate(aux.float(), size=y.shape[-2:], mode="bilinear", align_corners=True)
        loss = loss + config.aux_weight * ohem_cross_entropy(aux, y, thresh, min_kept, weight)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    return loss.item()


class _StepLog:
    """`train_log.csv`, one row per step; it survives resumes, so it also times the run."""

    def __init__(self, path: Path, step: int) -> None:
        """New at step 0, else trimmed to rows ≤ step (the later ones re-run) and appended."""
        self.path = path
        if step == 0 or not path.exists():
            self.file = open(path, "w", newline="")
            csv.writer(self.file).writerow(["step", "epoch", "loss", "lr", "sec_per_step"])
        else:
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
            self.file = open(path, "a", newline="")
        self.writer = csv.writer(self.file)

    def write(self, step: int, epoch: int, loss: float, lr: float, seconds: float) -> None:
        """One step's row, flushed: a killed run keeps its log."""
        self.writer.writerow([step, epoch, f"{loss:.5f}", f"{lr:.6g}", f"{seconds:.3f}"])
        self.file.flush()

    def seconds(self) -> float:
        """Wall time of all steps in the log (unlike a timer, it spans resumes)."""
        with open(self.path, newline="") as f:
            return sum(float(r["sec_per_step"]) for r in csv.DictReader(f))


@dataclass
class _Run:
    """One training run in progress: its config, data, state, logs and progress bar."""

    config: TrainConfig
    info: Any  # the dataset's facts (classes, palette)
    train_set: Any
    val_set: Any  # None when the run never validates
    commit: str | None
    init: dict | None  # what `initialise` said of the checkpoint the weights started from
    state: TrainState
    weight: torch.Tensor | None
    steps_per_epoch: int
    total: int
    out: Path
    log: _StepLog
    bar: Any
    losses: list[float] = field(default_factory=list)
    t_last: float = field(default_factory=time.time)
    closed: bool = False

    @classmethod
    def start(cls, config: TrainConfig) -> _Run:
        """Seed, read the data, build the model and optimiser, then resume if there is a state.
        The order is fixed: each step consumes random numbers the next depends on."""
        from tqdm import tqdm

        if config.threads:
            torch.set_num_threads(config.threads)
        seed_all(config.seed)
        device = config.device
        # The loss scaler only matters for fp16 (bf16 has fp32's exponent range).
        use_scaler = _amp_dtype(config.amp, torch.device(device).type) == torch.float16
        info = dataset_info(config.dataset)
        train_set, val_set = datasets(config)
        commit = source_commit()  # now: the checkout may change while a long run trains
        model = _build(config, info.num_classes).to(device)
        init = initialise(model, config.init) if config.init else None
        model.train()
        state = TrainState(
            model,
            _make_optimizer(model, config),
            torch.amp.GradScaler("cuda", enabled=use_scaler),
        )
        weight = torch.tensor(config.class_weights, device=device) if config.class_weights else None
        steps_per_epoch = len(train_set) // config.batch
        if steps_per_epoch == 0:
            raise ValueError(
                f"train: '--batch': expected ≤ {len(train_set)} training images, got {config.batch}"
            )
        total = config.steps or config.epochs * steps_per_epoch
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        resume(state, config, out, total)
        bar = tqdm(
            total=total,
            initial=state.step,
            desc="train",
            unit="it",
            dynamic_ncols=True,
            disable=config.no_progress,
        )
        log = _StepLog(out / "train_log.csv", state.step)
        return cls(
            config,
            info,
            train_set,
            val_set,
            commit,
            init,
            state,
            weight,
            steps_per_epoch,
            total,
            out,
            log,
            bar,
        )

    def epoch(self) -> bool:
        """Step through the rest of the current epoch; True when it stopped at `stop_at` (before
        the end of the schedule)."""
        c, state = self.config, self.state
        epoch, skip = divmod(state.step, self.steps_per_epoch)
        for x, y in batches(self.train_set, c.batch, c.seed, epoch, skip):
            self.step(x, y, epoch)
            if c.ckpt_every and state.step % c.ckpt_every == 0:
                self.checkpoint()
            if state.step >= self.total or (c.stop_at and state.step >= c.stop_at):
                break
        return bool(c.stop_at) and c.stop_at <= state.step < self.total

    def step(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> None:
        """One optimisation step at the scheduled learning rate, logged."""
        c, state = self.config, self.state
        lr = poly_lr(c.lr, state.step, self.total, 0.9, c.warmup)
        for g in state.optimizer.param_groups:
            g["lr"] = lr * g["lr_mult"]
        loss = _train_step(state, x.to(c.device), y.to(c.device), self.weight, c)
        if not math.isfinite(loss):
            raise RuntimeError(f"train: loss became {loss} at step {state.step}")
        state.step += 1
        now = time.time()
        self.losses.append(loss)
        self.log.write(state.step, epoch, loss, lr, now - self.t_last)
        self.t_last = now
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{np.mean(self.losses[-20:]):.3f}", lr=f"{lr:.2e}", ep=epoch)

    def validation_due(self) -> bool:
        """At the end of every `val_every`-th epoch, and at the end of the schedule."""
        step, per = self.state.step, self.steps_per_epoch
        if self.val_set is None or (step % per and step < self.total):
            return False
        return (step // per) % self.config.val_every == 0 or step >= self.total

    def validate(self) -> None:
        """Whole-image validation metrics into the history; a new best is saved as best.pt."""
        from ..evaluate import evaluate, model_predictor

        state, model = self.state, self.state.model
        cm = evaluate(
            model_predictor(model, self.config.device),
            self.val_set,
            self.info.num_classes,
            limit=self.config.val_limit,
        )
        model.train()
        res = cm.summary(self.val_set.info.classes)
        res.update(step=state.step, epoch=state.step // self.steps_per_epoch, time=time.time())
        state.history.append(res)
        (self.out / "history.json").write_text(json.dumps(state.history, indent=1))
        self.bar.write(
            f"step {state.step} epoch {res['epoch']}: val mIoU {res['miou']:.4f} "
            f"pixel acc {res['pixel_accuracy']:.4f}"
        )
        if res["miou"] > state.best:
            state.best = res["miou"]
            meta = {"val": res, "step": state.step, "args": self.config.to_dict()}
            save_final(model, self.out / "best.pt", self.config.preset, meta)
        self.checkpoint()

    def checkpoint(self) -> None:
        """The resumable state to `<out>/last.pt`."""
        self.state.save(self.out / "last.pt", self.config.to_dict())

    def close(self) -> None:
        """Close the progress bar and the step log (once)."""
        if not self.closed:
            self.bar.close()
            self.log.file.close()
            self.closed = True

    def finish(self) -> dict:
        """final.pt with the model card's facts, last.pt, summary.json; the final metrics."""
        self.close()
        state = self.state
        final = state.history[-1] if state.history else {}
        facts = training_facts(
            self.config, self.train_set, self.val_set, self.log.seconds(), self.commit, self.init
        )
        meta = {"val": final, "step": state.step, "args": self.config.to_dict(), "training": facts}
        save_final(state.model, self.out / "final.pt", self.config.preset, meta)
        self.checkpoint()
        last20 = float(np.mean(self.losses[-20:])) if self.losses else None
        summary = {"final": final, "best_miou": state.best, "steps": state.step}
        summary["train_loss_last20"] = last20
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return final
