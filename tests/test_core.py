"""ifa_rt._core: the pybind11 module itself (build facts, Options, engine-level checks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ifa_rt import _build_info, _core


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location(
        "make_fixtures", Path(__file__).parent / "fixtures" / "make_fixtures.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("core")
    module.save(module.tiny_module(), out / "tiny.ifa.pt", module.metadata())
    return out / "tiny.ifa.pt"


def test_build_facts():
    assert _core.torch_version() == torch.__version__ == _build_info.TORCH_VERSION
    assert _core.has_cuda_engine() == (torch.version.cuda is not None) == _build_info.WITH_CUDA
    assert _core.version()


def test_options_defaults_and_from_map():
    d = _core.Options()
    assert (d.device, d.precision, d.max_batch, d.shapes, d.threads, d.strict) == (
        "cpu",
        "fp32",
        1,
        [],
        0,
        False,
    )
    o = _core.Options.from_map(
        {"shapes": "360x480,512x1024", "max_batch": "4", "precision": "bf16"}
    )
    assert o.shapes == [(360, 480), (512, 1024)] and o.max_batch == 4 and o.precision == "bf16"
    with pytest.raises(ValueError, match=r"^Options: unknown option 'batch' \(known: device, "):
        _core.Options.from_map({"batch": "2"})
    with pytest.raises(
        ValueError, match=r"^Options: 'shapes': expected HxW\[,HxW...\], got '360'$"
    ):
        _core.Options.from_map({"shapes": "360"})


def test_engine_output_checks(tiny):
    engine = _core.Segmenter(str(tiny), _core.Options.from_map({"shapes": "32x48"}))
    images = np.zeros((2, 32, 48, 3), np.uint8)
    out = np.empty((2, 32, 48), np.uint8)
    engine.segment_into(images, out)
    with pytest.raises(ValueError) as err:
        engine.segment_into(images, np.empty((2, 32, 47), np.uint8))
    assert (
        str(err.value)
        == "Segmenter.segment: output 'labels': expected 3072 uint8 elements, got 3008"
    )
    with pytest.raises(
        ValueError, match="output 'labels': expected a writable C-contiguous uint8 array"
    ):
        engine.segment_into(images, np.empty((2, 48, 32), np.uint8).transpose(0, 2, 1))
    with pytest.raises(
        ValueError, match="output 'logits': expected a writable C-contiguous float32 array"
    ):
        engine.logits_into(images, np.empty((2, 5, 32, 48), np.float64))
    with pytest.raises(ValueError, match="input 'images': expected dtype uint8, got complex64"):
        engine.segment_into(images.astype(np.complex64), out)
    assert engine.num_classes == 5 and '"format_version": 1' in engine.metadata_json
    assert engine.options.runtime in ("static", "jit") and engine.path == str(tiny)
