"""What a run carries from step to step: weights, optimiser, loss scaler, step, validation
history and every RNG state; saved whole to `<out>/last.pt` so a resumed run continues exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = ["TrainState", "seed_all", "rng_state", "set_rng_state"]


def seed_all(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG state that affects training, for exact resume."""
    st = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore states saved by rng_state."""
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


@dataclass
class TrainState:
    """The resumable part of a run; `best` is the best validation mIoU so far (-1: none)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    step: int = 0
    history: list[dict] = field(default_factory=list)
    best: float = -1.0

    def save(self, path: Path, settings: dict) -> None:
        """Write the state, RNGs included, with the run's settings (for the record)."""
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "history": self.history,
                "best": self.best,
                "rng": rng_state(),
                "args": settings,
            },
            tmp,
        )
        tmp.replace(path)  # atomic: a kill mid-save never corrupts the last checkpoint

    def load(self, path: Path, device: str) -> None:
        """Continue from a state written by `save`: RNGs restored last, as they were saved."""
        st = torch.load(path, map_location=device, weights_only=False)
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scaler.load_state_dict(st["scaler"])
        self.step, self.history = st["step"], st.get("history", [])
        self.best = st.get("best", -1.0)
        set_rng_state(st["rng"])
