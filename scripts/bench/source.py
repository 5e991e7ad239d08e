"""The weights every variant runs, and the files exported from them (artifact, ONNX, AOTI).

One `ModelSource` per benchmark run builds the model once (seeded random weights, a
checkpoint, or the architecture of a bundled artifact) and exports each file lazily, once, into
the run's work folder, so variants that share a file (ONNX Runtime and OpenVINO) share it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["ModelSource"]


@dataclass
class ModelSource:
    """The model of one benchmark run and its exported forms, cached per shape.

    preset: the architecture (ignored when `bundled` is given: the artifact's own is used).
    bundled: a bundled model name (e.g. "camvid"): the `segmenter` variant runs that trained
        artifact; every other variant runs its architecture with seeded random weights, so
        their labels are compared with the eager labels and the segmenter's are not.
    checkpoint: weights for every variant (instead of seeded random ones).
    """

    preset: str
    workdir: Path
    bundled: str | None = None
    checkpoint: str | None = None
    seed: int = 0
    _model: Any = None
    _meta: dict[str, Any] = field(default_factory=dict)
    _files: dict[tuple, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.bundled and self.checkpoint:
            raise ValueError("ModelSource: 'bundled'/'checkpoint': expected one of them, got both")
        if self.bundled:
            from ifa_rt.deploy.export import load_artifact

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript, deprecated
                _, self._meta = load_artifact(self.bundled_path())
            self.preset = self._meta.get("preset") or self.preset

    def bundled_path(self) -> Path:
        """The bundled artifact's file (ValueError naming the bundled models if unknown)."""
        from ifa_rt.bundled import resolve

        return resolve(self.bundled, "bench")

    def weights(self) -> dict[str, str]:
        """Which weights each group of variants runs, as recorded in the result."""
        if self.checkpoint:
            return {"all": f"checkpoint {self.checkpoint}"}
        peers = f"random ({self.preset}, torch.manual_seed({self.seed}))"
        if self.bundled:
            return {"segmenter": f"bundled '{self.bundled}' (trained)", "others": peers}
        return {"all": peers}

    def weights_of(self, variant: str) -> str:
        """The weights `variant` runs (one of the values of `weights()`)."""
        w = self.weights()
        return w.get(variant) or w.get("others") or w["all"]

    def same_weights_as_eager(self, variant: str) -> bool:
        """Whether `variant`'s labels can be compared with the eager model's."""
        return self.weights_of(variant) == self.weights_of("eager")

    def mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The normalisation in every graph: the bundled artifact's, else the project default."""
        from ifa_rt.deploy.metadata import DEFAULT_MEAN, DEFAULT_STD

        return (
            tuple(self._meta.get("mean", DEFAULT_MEAN)),
            tuple(self._meta.get("std", DEFAULT_STD)),
        )

    def model(self) -> torch.nn.Module:
        """The reference model in eval mode, built once (never pretrained: nothing downloads)."""
        if self._model is None:
            if self.checkpoint:
                from ifa_rt.deploy.checkpoint import load_checkpoint

                self._model = load_checkpoint(self.checkpoint, preset=self.preset)
            else:
                from ifa_rt.model import build_model

                # The bundled artifact records its exact config; the preset's is the default.
                config = {**self._meta.get("config", {}), "pretrained_backbone": False}
                torch.manual_seed(self.seed)
                self._model = build_model(self.preset, **config)
            self._model.eval()
        return self._model

    def artifact(self) -> Path:
        """The TorchScript `.ifa.pt` the segmenter runs: the bundled one, or exported once."""
        if self.bundled:
            return self.bundled_path()
        key = ("artifact",)
        if key not in self._files:
            import ifa_rt

            path = self.workdir / f"{self.preset}.ifa.pt"
            mean, std = self.mean_std()
            ifa_rt.export(self.model(), path, preset=self.preset, mean=mean, std=std)
            self._files[key] = path
        return self._files[key]

    def onnx(self, shape: tuple[int, int], output: str = "labels") -> Path:
        """The fused ONNX file for one input size (its geometry is baked in; batch is dynamic),
        with `output` "labels" (timed) or "logits" (for the correctness check)."""
        key = ("onnx", shape, output)
        if key not in self._files:
            from ifa_rt.deploy.onnx_export import export_onnx

            path = self.workdir / f"{self.preset}-{shape[0]}x{shape[1]}-{output}.onnx"
            mean, std = self.mean_std()
            export_onnx(
                self.model(),
                path,
                height=shape[0],
                width=shape[1],
                output=output,
                mean=mean,
                std=std,
            )
            self._files[key] = path
        return self._files[key]

    def int8(self, shape: tuple[int, int], max_batch: int, threads: int) -> tuple[Path, dict]:
        """The int8 package (`ifa_rt.quantize`) for one input size and its gate report:
        calibrated on 32 real frames, the first convolution (the stem) kept fp32 (the bundled
        calibration keeps its stem fp32 too), the gate forced, since random weights have no
        accuracy to protect."""
        key = ("int8", shape, max_batch, threads)
        if key not in self._files:
            from ifa_rt.bench import load_images
            from ifa_rt.deploy.quantize import QuantizationGate, conv_names, quantize_artifact
            from ifa_rt.deploy.rebuild import rebuild_from_artifact

            images, _ = load_images(shape, 32)
            path = self.workdir / f"{self.preset}-{shape[0]}x{shape[1]}-b{max_batch}-int8.pt2"
            first_conv = conv_names(rebuild_from_artifact(self.artifact())[0])[:1]
            meta = quantize_artifact(
                self.artifact(),
                path,
                calibration=list(images),
                gate_images=list(images[:8]),
                shapes=[shape],
                max_batch=max_batch,
                threads=threads,
                gate=QuantizationGate(),
                keep_fp32=first_conv,
                force=True,
            )
            self._files[key] = (path, meta["quantization"])
        return self._files[key]

    def aoti(self, shape: tuple[int, int], max_batch: int, threads: int) -> Path:
        """The AOTInductor package (`.pt2`) for one input size, batches up to `max_batch` and
        `threads` intra-op threads (compiled in)."""
        key = ("aoti", shape, max_batch, threads)
        if key not in self._files:
            import ifa_rt

            path = self.workdir / f"{self.preset}-{shape[0]}x{shape[1]}-b{max_batch}.pt2"
            mean, std = self.mean_std()
            ifa_rt.export(
                self.model(),
                path,
                format="aoti",
                shapes=[shape],
                max_batch=max_batch,
                threads=threads,
                preset=self.preset,
                mean=mean,
                std=std,
            )
            self._files[key] = path
        return self._files[key]
