"""The files a run reads and writes besides its logs: resuming from `last.pt`, starting from
another checkpoint's weights (`init`), and the final and best checkpoints with the facts a
model card needs (recipe, data, commit, torch, time).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from .config import TrainConfig
from .state import TrainState

__all__ = ["resume", "initialise", "save_final", "source_commit", "training_facts"]


def resume(state: TrainState, config: TrainConfig, out: Path, total: int) -> None:
    """Continue from `config.resume`, else from `<out>/last.pt` if present (unless
    `no_auto_resume`); a named resume file that is missing is a FileNotFoundError."""
    path = Path(config.resume) if config.resume else out / "last.pt"
    if path.is_file() and (config.resume or not config.no_auto_resume):
        state.load(path, config.device)
        print(f"train: resumed from '{path}' at step {state.step}/{total}")
    elif config.resume:
        raise FileNotFoundError(f"train: '--resume': checkpoint '{path}' does not exist")


def initialise(model: torch.nn.Module, path: str) -> dict:
    """Start from the weights of a project checkpoint (a fresh optimiser and schedule); returns
    what the model card needs to know of it: file, sha256, its validation and training."""
    from ..deploy.checkpoint import load_checkpoint

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


def save_final(model: torch.nn.Module, path: Path, preset: str, meta: dict) -> None:
    """Save in the project checkpoint format (`ifa_rt.deploy.checkpoint`)."""
    from ..deploy.checkpoint import save_checkpoint

    save_checkpoint(model, str(path), preset=preset, meta=meta)


def source_commit() -> str | None:
    """`git describe --always --dirty` of the checkout this code runs from, if it is one."""
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


def training_facts(
    config: TrainConfig,
    train_set,
    val_set,
    seconds: float,
    commit: str | None,
    init: dict | None = None,
) -> dict:
    """What a model card needs to say how the weights were made (kept in the checkpoint)."""
    recipe = None
    if config.recipe:
        from ..recipes import load_recipe

        recipe = {
            "file": Path(config.recipe).name,
            "text": Path(config.recipe).read_text(),
            "settings": load_recipe(config.recipe),  # with any `base` recipe's settings resolved
        }
    holdout = config.holdout
    return {
        "recipe": recipe,
        "data": {
            "dataset": config.dataset,
            "train_split": config.train_split,
            "train_images": len(train_set),
            "train_sequences": train_set.sequences(),
            "holdout_sequences": list(holdout or []),
            "val_split": (
                f"{config.train_split} [{'+'.join(holdout)}]" if holdout else config.val_split
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
