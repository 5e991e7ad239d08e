"""Correctness of a variant against the eager fp32 reference when the weights are not trained.

With random weights (the cityscapes-r50 rows: no trained weights ship) many pixels are
near-ties: their top two classes differ by less than any reduced precision's rounding, so
plain label agreement mixes real errors with coin flips. Each variant is therefore checked two
ways, both against the eager fp32 model on the same images:

  1. Logits: max and mean |logits - reference| over every pixel and class, divided by the
     reference logits' scale s (their root mean square). Within tolerance when the mean is at
     most the precision's expected error e (`EXPECTED_ERROR`).
  2. Labels (the variant's own timed labels) on clear-margin pixels only: pixels whose reference
     top-2 margin exceeds tau = 2 e s. A per-logit error of at most e s moves a margin by at
     most 2 e s, so a correct implementation of that precision does not flip a clear-margin
     pixel (e is the typical error: where the local error is larger, a few could, so the
     count is reported), while a wrong graph (channel order, normalisation, a broken kernel)
     flips many. The fraction of pixels excluded as near-ties is reported beside it.

`EXPECTED_ERROR` (fraction of s) per precision:
  fp32  1e-4: fp32 variants differ only in summation order and fused batch norm (unit round-off
        2^-24 ~ 6e-8, accumulated over ~100 layers and 10^3-10^4-term sums: ~1e-5 of s); the
        same bound as the fused form's own test (tests/test_fuse.py), and still orders of
        magnitude below the error of a wrong graph.
  bf16  0.05: 8 significant bits, unit round-off 2^-8 ~ 0.4 % per rounding; inputs, weights and
        activations rounded at each of R50's ~60 layers, growing as a random walk
        (sqrt(60) x 0.4 % ~ 3 %), with headroom.
  int8  0.15: per-tensor 8-bit activations (step = range/255, and a tensor's range is several
        times its rms: ~2 % of rms per quantisation, 1/sqrt(12) of a step on average),
        accumulated over the same depth (sqrt(60) x 2 % ~ 15 %).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["EXPECTED_ERROR", "compare", "precision_of", "top2_margin"]

EXPECTED_ERROR = {"fp32": 1e-4, "bf16": 0.05, "int8": 0.15}
# A logit error of at most e*s moves the top-2 margin by at most 2*e*s.
MARGIN_FACTOR = 2.0


def precision_of(variant: str, info: dict[str, Any]) -> str:
    """The arithmetic a variant computes in: its name, or OpenVINO's reported precision hint."""
    if variant == "segmenter_int8":
        return "int8"
    if variant == "segmenter_bf16":
        return "bf16"
    hint = str(info.get("INFERENCE_PRECISION_HINT", ""))
    if "bfloat16" in hint or "bf16" in hint:
        return "bf16"
    if "float16" in hint or "f16" in hint.replace("f32", ""):
        return "bf16"  # fp16 has more mantissa than bf16: bf16's bound covers it
    return "fp32"


def top2_margin(logits: np.ndarray) -> np.ndarray:
    """Per pixel, the largest logit minus the second largest: [B,C,H,W] -> [B,H,W]."""
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(f"top2_margin: 'logits': expected [B,C>=2,H,W], got {logits.shape}")
    top2 = np.partition(logits, logits.shape[1] - 2, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def compare(
    reference: np.ndarray,
    labels: np.ndarray,
    logits: np.ndarray | None,
    precision: str,
) -> dict[str, Any]:
    """The correctness record of one variant (see the module docstring).

    reference: the eager fp32 logits [B,C,H,W]; labels: the variant's labels [B,H,W];
    logits: the variant's logits [B,C,H,W] (None when it cannot give them: labels only).
    """
    if precision not in EXPECTED_ERROR:
        raise ValueError(
            f"compare: 'precision': expected one of {list(EXPECTED_ERROR)}, got {precision!r}"
        )
    b, _, h, w = reference.shape
    if labels.shape != (b, h, w):
        raise ValueError(f"compare: 'labels': expected shape {(b, h, w)}, got {labels.shape}")
    if logits is not None and logits.shape != reference.shape:
        raise ValueError(f"compare: 'logits': expected shape {reference.shape}, got {logits.shape}")
    reference = reference.astype(np.float32, copy=False)
    scale = float(np.sqrt(np.mean(np.square(reference, dtype=np.float64))))
    if not np.isfinite(scale) or scale == 0.0:
        raise ValueError(f"compare: 'reference': expected finite, non-zero logits, scale {scale}")
    expected = EXPECTED_ERROR[precision]
    threshold = MARGIN_FACTOR * expected * scale
    clear = top2_margin(reference) > threshold
    reference_labels = reference.argmax(1)
    wrong = int(np.count_nonzero((labels != reference_labels) & clear))
    kept = int(np.count_nonzero(clear))
    out: dict[str, Any] = {
        "precision": precision,
        "expected_error": expected,
        "logits_scale": scale,
        "margin_threshold": threshold,
        "near_tie_fraction": 1.0 - kept / clear.size,
        "clear_margin_pixels": kept,
        "clear_margin_disagreements": wrong,
        "clear_margin_agreement": None if kept == 0 else 1.0 - wrong / kept,
        "max_abs_error_rel": None,
        "mean_abs_error_rel": None,
        "logits_within_tolerance": None,
    }
    if logits is not None:
        diff = np.abs(logits.astype(np.float32, copy=False) - reference)
        mean_rel = float(np.mean(diff, dtype=np.float64)) / scale
        out.update(
            max_abs_error_rel=float(diff.max()) / scale,
            mean_abs_error_rel=mean_rel,
            logits_within_tolerance=bool(mean_rel <= expected),
        )
    return out


def check_cell(
    runners: dict[str, Any],
    labels: dict[str, np.ndarray],
    images: np.ndarray,
    reference: np.ndarray,
    comparable: Any,
) -> dict[str, dict[str, Any]]:
    """The correctness record of every variant of a cell that runs the reference's weights.

    runners: by variant (their `logits`, untimed); labels: each variant's timed labels;
    reference: the eager fp32 logits of `images`; comparable(variant): same weights as eager.
    A variant whose logits fail is still checked on its labels, with the error recorded.
    """
    out = {}
    for name, variant_labels in labels.items():
        if not comparable(name):
            continue
        runner = runners[name]
        logits, error = None, None
        try:
            logits = runner.logits(images)
        except NotImplementedError:
            error = "this variant gives no logits"
        except Exception as exc:  # recorded: the labels check still stands
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"
        if logits is not None and logits.shape != reference.shape:
            logits, error = None, f"logits of shape {logits.shape}, expected {reference.shape}"
        record = compare(reference, variant_labels, logits, precision_of(name, runner.info))
        if error:
            record["logits_error"] = error
        out[name] = record
    return out
