"""Training: `TrainConfig` (every setting, each default once; `from_recipe`) and
`train(config)`. Only the command line imports this package (tests/test_import_graph.py)."""

from __future__ import annotations

from .checkpointing import save_final
from .config import TrainConfig
from .loop import train

__all__ = ["TrainConfig", "train", "save_final"]
