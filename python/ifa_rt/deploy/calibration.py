"""int8 calibration: what quantizing an artifact learned, kept so its int8 model compiles on
any VNNI CPU.

An AOTInductor package is machine code for one CPU and one torch, so the int8 model cannot
ship as a package. What quantization learned from images is small, though: the observers'
statistics and which convolutions stay fp32. `ifa-rt quantize --calibration C` saves them
with the gate's report (`NAME.int8.pt`, named in `ifa_rt.side_files`); `compile_int8(artifact,
C, shapes)` rebuilds the same int8 graph from the artifact and compiles it for this machine,
once (cached like `compile_artifact`). The bundled
`camvid` ships `camvid.int8.pt`, which `Segmenter("camvid", precision="int8", shapes=...)`
uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..runtime.precision import cpu_has_vnni
from ..side_files import int8_cached_path, load_calibration
from .aoti import compile_with_progress
from .quantize import _Calibrated
from .rebuild import rebuild_from_artifact

__all__ = ["compile_int8"]


def compile_int8(
    artifact: str | Path,
    calibration: str | Path,
    *,
    shapes: Sequence[tuple[int, int]],
    max_batch: int = 1,
    threads: int | None = None,
    show_progress: bool = True,
) -> Path:
    """The int8 package of `artifact` from its calibration, compiled once per machine and plan.

    Raises RuntimeError on a CPU without VNNI (int8 would be slower than fp32 there) and
    ValueError for a calibration of another artifact or one whose gate failed.
    """
    if not cpu_has_vnni():
        raise RuntimeError(
            "precision 'int8': needs a CPU with VNNI (avx512_vnni, avx_vnni or amx_int8); "
            "this CPU has none, so int8 would be slower than fp32 here"
        )
    artifact, calibration = Path(artifact), Path(calibration)
    threads = int(threads or torch.get_num_threads())
    shapes = [(int(h), int(w)) for h, w in shapes]
    target = int8_cached_path(artifact, calibration, shapes, max_batch, threads)
    if target.is_file():
        return target
    spec = load_calibration(calibration, artifact)
    facts = spec["quantization"]
    if not facts.get("gate", {}).get("passed", False):
        raise ValueError(
            f"int8 calibration '{calibration}': its accuracy gate failed; it is not used"
        )
    wrapper, meta = rebuild_from_artifact(artifact, coarse=True)
    calibrated = _Calibrated.from_state(wrapper, spec["observers"], spec["keep_fp32"])
    compile_with_progress(
        wrapper,
        meta,
        artifact,
        target,
        shapes,
        max_batch,
        threads,
        "int8",
        show_progress,
        precision="int8",
        compile_bucket=calibrated.compile,
        extra={"quantization": dict(facts, calibration=calibration.name)},
    )
    return target
