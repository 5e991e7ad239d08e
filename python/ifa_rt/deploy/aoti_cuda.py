"""The CUDA side of AOTInductor packages (`aoti.compile_package(..., device="cuda")`): which
device a package is compiled on, and what it then depends on (the GPU's kind, not the CPU's
ISA). Its kernels are compiled for that GPU's architecture, so the package runs on GPUs of
that compute capability; the C++ runtime loads it with its CUDA engine
(cpp/src/engine_aoti_cuda.cpp)."""

from __future__ import annotations

import platform
import re
from typing import Any

import torch

__all__ = ["compile_device", "cuda_facts"]


def compile_device(device: Any, custom: bool = False) -> str:
    """The device a package is compiled on, checked: "cpu", or a CUDA device present here.
    `custom`: the caller brings its own compile (the int8 path), which is CPU only."""
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"export: 'device': expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if device == "cpu":
        return device
    if custom:
        raise ValueError(
            f"export: 'device': expected 'cpu' for a custom or int8 compile (int8 packages run on "
            f"the CPU only), got {device!r}"
        )
    index = torch.device(device).index or 0
    if not torch.cuda.is_available() or index >= torch.cuda.device_count():
        raise RuntimeError(
            f"export: 'device': expected an available CUDA device, got {device!r}: "
            f"{torch.cuda.device_count()} CUDA devices here (torch {torch.__version__})"
        )
    return device


def cuda_facts(device: str) -> dict[str, str]:
    """The `aoti` facts of a package compiled on CUDA `device`: its GPU, the machine, torch."""
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return {
        "device": "cuda",
        "cpu_isa": "none",
        "cuda_capability": f"{major}.{minor}",
        "gpu": torch.cuda.get_device_name(index),
        "machine": platform.machine(),
        "torch_version": torch.__version__,
    }
