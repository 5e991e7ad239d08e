"""Training (docs/model.md §1 recipe, scaled to the data): SGD/AdamW, poly lr (0.9), 10× lr for
neck/head, OHEM cross-entropy (+ 0.4 × aux), periodic resumable checkpoints, per-epoch
validation mIoU, CSV/JSON logs, AMP on CUDA.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import camvid, cityscapes, dataset_info, train_transform
from .objective import ohem_cross_entropy, param_groups, poly_lr

# The objective's pieces live in objective.py; they stay importable from here.
__all__ = ["ohem_cross_entropy", "poly_lr", "param_groups", "train", "save_final"]


def _seed_all(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """Every RNG state that affects training, for exact resume."""
    st = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    """Restore states saved by _rng_state."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _batches(dataset, batch: int, seed: int, epoch: int, skip: int) -> Iterator:
    """Shuffled batches of one epoch (order fixed by seed+epoch), skipping the first `skip`."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(len(dataset), generator=g).tolist()
    nb = len(order) // batch  # drop the last partial batch: BN needs steady batch sizes
    for b in range(skip, nb):
        items = [dataset[i] for i in order[b * batch : (b + 1) * batch]]
        yield torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])


def _datasets(args: argparse.Namespace):
    """Training and validation splits; `--holdout` validates on whole recordings kept out."""
    reader = camvid if args.dataset == "camvid" else cityscapes
    transform = train_transform(tuple(args.crop), tuple(args.scale), args.color_jitter)
    train_set = reader(args.train_split, args.data_root, transform, cache=True)
    val_set = None
    if args.holdout:
        val_set = reader(args.train_split, args.data_root, cache=True)
        val_set.keep_sequences(args.holdout, keep=True)
        train_set.keep_sequences(args.holdout, keep=False)
    elif args.val_every:
        val_set = reader(args.val_split, args.data_root, cache=True)
    if args.train_limit:
        train_set.pairs = train_set.pairs[: args.train_limit]
    if not args.val_every:
        val_set = None
    return train_set, val_set


def _build(preset: str, num_classes: int, overrides: dict):
    """Build the preset; `pretrained_backbone` (offline ImageNet Lite0 weights) comes from it."""
    from .model import build_model

    return build_model(preset, num_classes=num_classes, **overrides)


def save_final(model: torch.nn.Module, path: Path, preset: str, meta: dict) -> None:
    """Save in the project checkpoint format (`ifa_rt.deploy.checkpoint`)."""
    from .deploy.checkpoint import save_checkpoint

    save_checkpoint(model, str(path), preset=preset, meta=meta)


def _source_commit() -> str | None:
    """`git describe --always --dirty` of the checkout this code runs from, if it is one."""
    import subprocess

    try:
        return (
            subprocess.run(
                ["git", "describe", "--always", "--dirty"],
                check=True,
                capture_output=True,
                text=True,
                timeout=10,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _training_facts(
    args: argparse.Namespace,
    train_set,
    val_set,
    seconds: float,
    commit: str | None,
    init: dict | None = None,
) -> dict:
    """What a model card needs to say how the weights were made (kept in the checkpoint)."""
    recipe = None
    if args.config:
        from .recipes import load_recipe

        recipe = {
            "file": Path(args.config).name,
            "text": Path(args.config).read_text(),
            "settings": load_recipe(args.config),  # with any `base` recipe's settings resolved
        }
    return {
        "recipe": recipe,
        "data": {
            "dataset": args.dataset,
            "train_split": args.train_split,
            "train_images": len(train_set),
            "train_sequences": train_set.sequences(),
            "holdout_sequences": list(args.holdout or []),
            "val_split": (
                f"{args.train_split} [{'+'.join(args.holdout)}]" if args.holdout else args.val_split
            )
            if val_set is not None
            else None,
            "val_images": len(val_set) if val_set is not None else 0,
        },
        "commit": commit,
        "torch": str(torch.__version__),  # TorchVersion would break weights_only loads
        "train_seconds": round(seconds, 1),
        "init": init,
    }


def _initialise(model: torch.nn.Module, path: str) -> dict:
    """Start from the weights of a project checkpoint (a fresh optimiser and schedule); returns
    what the model card needs to know of it: file, sha256, its validation and training."""
    from .deploy.checkpoint import load_checkpoint

    source = load_checkpoint(path)
    model.load_state_dict(source.state_dict(), strict=True)
    meta = source.checkpoint_meta
    training = dict(meta.get("training") or {})
    training.pop("recipe", None)  # its text is in the file the `init` recipe builds on
    return {
        "file": Path(path).name,
        "sha256": meta.get("checkpoint_sha256"),
        "steps": meta.get("step"),
        "validation": meta.get("val") or {},
        "training": training,
    }


def _args_dict(args: argparse.Namespace) -> dict:
    """The run's arguments without CLI plumbing (e.g. `_run`), safe for weights_only loads."""
    return {k: v for k, v in vars(args).items() if not k.startswith("_") and not callable(v)}


def _validate(model, val_set, num_classes: int, device: str, limit: int | None) -> dict:
    """Whole-image val metrics; restores train mode."""
    from .evaluate import evaluate, model_predictor

    cm = evaluate(model_predictor(model, device), val_set, num_classes, limit=limit)
    model.train()
    return cm.summary(val_set.info.classes)


def _make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """SGD (momentum 0.9) or AdamW over the encoder / decoder parameter groups."""
    groups = param_groups(model, args.lr, args.head_lr_mult)
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    return torch.optim.AdamW(groups, lr=args.lr, weight_decay=args.weight_decay)


def _open_log(path: Path, step: int):
    """Per-step CSV log: new at step 0, else trimmed to rows ≤ step (they re-run) and appended."""
    if step == 0 or not path.exists():
        f = open(path, "w", newline="")
        csv.writer(f).writerow(["step", "epoch", "loss", "lr", "sec_per_step"])
        return f
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + [r for r in rows[1:] if int(r[0]) <= step])
    return open(path, "a", newline="")


def _amp_dtype(amp: str, device_type: str) -> torch.dtype | None:
    """Autocast dtype for `--amp` on this device; 'auto' is fp16 on CUDA, fp32 on CPU."""
    if amp == "auto":
        amp = "fp16" if device_type == "cuda" else "off"
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _train_seconds(log_path: Path) -> float:
    """Wall time of all steps in the per-step log (it survives resumes, unlike a timer)."""
    with open(log_path, newline="") as f:
        return sum(float(r["sec_per_step"]) for r in csv.DictReader(f))


def _train_step(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    scaler,
    x: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor | None,
    args: argparse.Namespace,
) -> float:
    """One step: OHEM CE (+ aux_weight × aux OHEM CE), AMP on CUDA; returns the loss."""
    amp = _amp_dtype(args.amp, x.device.type)
    with torch.autocast(x.device.type, dtype=amp, enabled=amp is not None):
        out = model(x)
    logits, aux = out if isinstance(out, (tuple, list)) else (out, None)
    loss = ohem_cross_entropy(logits.float(), y, args.ohem_thresh, args.min_kept, weight)
    if aux is not None and args.aux_weight > 0:
        aux = F.interpolate(aux.float(), size=y.shape[-2:], mode="bilinear", align_corners=True)
        loss = loss + args.aux_weight * ohem_cross_entropy(
            aux, y, args.ohem_thresh, args.min_kept, weight
        )
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return loss.item()


def train(args: argparse.Namespace) -> dict:
    """Train per `args` (see configure_parser); returns the final metrics dict."""
    from tqdm import tqdm

    if args.threads:
        torch.set_num_threads(args.threads)
    _seed_all(args.seed)
    device = args.device
    # The loss scaler only matters for fp16 (bf16 has fp32's exponent range).
    use_amp = _amp_dtype(args.amp, torch.device(device).type) == torch.float16
    info = dataset_info(args.dataset)
    train_set, val_set = _datasets(args)
    commit = _source_commit()  # now: the checkout may change while a long run trains
    overrides = json.loads(args.overrides) if args.overrides else {}
    if args.aux is not None:
        overrides["aux"] = args.aux
    if args.pretrained is not None:
        overrides["pretrained_backbone"] = args.pretrained
    model = _build(args.preset, info.num_classes, overrides).to(device)
    init = _initialise(model, args.init) if args.init else None
    model.train()
    opt = _make_optimizer(model, args)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    weight = torch.tensor(args.class_weights, device=device) if args.class_weights else None
    steps_per_epoch = len(train_set) // args.batch
    if steps_per_epoch == 0:
        raise ValueError(
            f"train: '--batch': expected ≤ {len(train_set)} training images, got {args.batch}"
        )
    total = args.steps or args.epochs * steps_per_epoch
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    step, history, best = 0, [], -1.0
    resume = Path(args.resume) if args.resume else (out / "last.pt")
    if resume.is_file() and (args.resume or not args.no_auto_resume):
        st = torch.load(resume, map_location=device, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        scaler.load_state_dict(st["scaler"])
        step, history, best = st["step"], st.get("history", []), st.get("best", -1.0)
        _set_rng_state(st["rng"])
        print(f"train: resumed from '{resume}' at step {step}/{total}")
    elif args.resume:
        raise FileNotFoundError(f"train: '--resume': checkpoint '{resume}' does not exist")

    def checkpoint(path: Path) -> None:
        """Resumable state: model, optimiser, scaler, step, history, RNG."""
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "step": step,
                "history": history,
                "best": best,
                "rng": _rng_state(),
                "args": _args_dict(args),
            },
            tmp,
        )
        tmp.replace(path)  # atomic: a kill mid-save never corrupts the last checkpoint

    log_f = _open_log(out / "train_log.csv", step)
    log = csv.writer(log_f)
    bar = tqdm(
        total=total,
        initial=step,
        desc="train",
        unit="it",
        dynamic_ncols=True,
        disable=args.no_progress,
    )
    t_last = time.time()
    losses: list[float] = []
    while step < total:
        epoch, skip = divmod(step, steps_per_epoch)
        for x, y in _batches(train_set, args.batch, args.seed, epoch, skip):
            lr = poly_lr(args.lr, step, total, 0.9, args.warmup)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            loss = _train_step(model, opt, scaler, x.to(device), y.to(device), weight, args)
            if not math.isfinite(loss):
                raise RuntimeError(f"train: loss became {loss} at step {step}")
            step += 1
            now = time.time()
            losses.append(loss)
            log.writerow([step, epoch, f"{losses[-1]:.5f}", f"{lr:.6g}", f"{now - t_last:.3f}"])
            log_f.flush()
            t_last = now
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{lr:.2e}", ep=epoch)
            if args.ckpt_every and step % args.ckpt_every == 0:
                checkpoint(out / "last.pt")
            if step >= total or (args.stop_at and step >= args.stop_at):
                break
        if args.stop_at and step >= args.stop_at and step < total:
            checkpoint(out / "last.pt")
            bar.close()
            log_f.close()
            print(f"train: stopped at step {step}; rerun the same command to resume")
            return {}
        end_of_epoch = step % steps_per_epoch == 0 or step >= total
        if (
            val_set is not None
            and end_of_epoch
            and ((step // steps_per_epoch) % args.val_every == 0 or step >= total)
        ):
            res = _validate(model, val_set, info.num_classes, device, args.val_limit)
            res.update(step=step, epoch=step // steps_per_epoch, time=time.time())
            history.append(res)
            (out / "history.json").write_text(json.dumps(history, indent=1))
            bar.write(
                f"step {step} epoch {res['epoch']}: val mIoU {res['miou']:.4f} "
                f"pixel acc {res['pixel_accuracy']:.4f}"
            )
            meta = {"val": res, "step": step, "args": _args_dict(args)}
            if res["miou"] > best:
                best = res["miou"]
                save_final(model, out / "best.pt", args.preset, meta)
            checkpoint(out / "last.pt")
    bar.close()
    log_f.close()
    final = history[-1] if history else {}
    save_final(
        model,
        out / "final.pt",
        args.preset,
        {
            "val": final,
            "step": step,
            "args": _args_dict(args),
            "training": _training_facts(
                args, train_set, val_set, _train_seconds(out / "train_log.csv"), commit, init
            ),
        },
    )
    checkpoint(out / "last.pt")
    (out / "summary.json").write_text(
        json.dumps(
            {
                "final": final,
                "best_miou": best,
                "steps": step,
                "train_loss_last20": float(np.mean(losses[-20:])) if losses else None,
            },
            indent=1,
        )
    )
    return final
