# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""Segmenter refuses bad images, bad options and bad artifacts with one typed error that says
what was expected and what was given, and stays usable afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _reliability import fixture_dir, rand_images
from ifa_rt import Segmenter


def test_input_errors(tiny):
    seg = Segmenter(tiny, shapes=[(32, 48)], strict=True)
    im = rand_images(1, 32, 48)[0]
    cases = [
        (im.astype(np.float32), "expected dtype uint8, got float32"),
        (torch.zeros(32, 48, 3), "expected dtype uint8, got float32"),
        (im[0, 0], "expected shape [H,W,3] or [B,H,W,3], got [3] (rank 1)"),
        (
            np.zeros((32, 48, 2), np.uint8),
            "expected 3 channels (RGB, last dimension), got 2 (shape [32,48,2])",
        ),
        (
            np.zeros((0, 32, 48, 3), np.uint8),
            "expected a non-empty image batch, got shape [0,32,48,3]",
        ),
        (
            np.zeros((8, 8, 3), np.uint8),
            "expected height and width >= 16 (the artifact's min_size), got 8x8",
        ),
        (
            np.zeros((20, 30, 3), np.uint8),
            "expected a planned shape (32x48) in strict mode, got 20x30",
        ),
    ]
    for x, message in cases:
        with pytest.raises(ValueError) as err:
            seg(x)
        assert str(err.value) == f"Segmenter.segment: input 'images': {message}"
    with pytest.raises(
        ValueError, match=r"^Segmenter.logits: input 'images': expected dtype uint8"
    ):
        seg.logits(im.astype(np.int64))
    with pytest.raises(ValueError) as err:
        seg([im, im[..., :2]])
    assert str(err.value) == (
        "Segmenter.segment: input 'images[1]': expected 3 channels "
        "(RGB, last dimension), got 2 (shape [32,48,2])"
    )
    with pytest.raises(TypeError) as err:
        seg(b"image.png")
    assert str(err.value) == (
        "Segmenter.segment: input 'images': expected a numpy array, PIL image, torch tensor or "
        "DLPack array in host or CUDA memory (or a list of them), got bytes"
    )
    with pytest.raises(TypeError, match=r"input 'images\[1\]'.*got int"):
        seg([im, 3])
    np.testing.assert_array_equal(seg(im), seg(im))  # still serving after the errors


def test_option_errors(tiny):
    cases = [
        (
            dict(max_batch=0),
            ValueError,
            "Options: 'max_batch': expected an integer in [1, 1024], got 0",
        ),
        (
            dict(device="tpu"),
            ValueError,
            "Options: 'device': expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'",
        ),
        (
            dict(precision="fp64"),
            ValueError,
            "Options: 'precision': expected 'fp32', 'fp16', 'bf16' or 'int8', got 'fp64'",
        ),
        (
            dict(runtime="fast"),
            ValueError,
            "Options: 'runtime': expected 'auto', 'static', 'jit' or 'aoti', got 'fast'",
        ),
        (
            dict(shapes=[(8, 48)]),
            ValueError,
            "Options: 'shapes': expected height and width >= 16 (the artifact's min_size), got 8x48",
        ),
        (
            dict(shapes="32x48"),
            TypeError,
            "Options: 'shapes': expected a list of (height, width) pairs, got str",
        ),
        (
            dict(shapes=[(32, 48.0)]),
            TypeError,
            "Options: 'shapes': expected a list of (height, width) int pairs, got (32, 48.0)",
        ),
        (dict(threads="2"), TypeError, "Options: 'threads': expected an int, got str"),
        (dict(device=0), TypeError, "Options: 'device': expected a str, got int"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error) as err:
            Segmenter(tiny, **kwargs)
        assert str(err.value) == message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a CUDA device")
def test_cuda_without_device(tiny):
    with pytest.raises(RuntimeError, match="no CUDA device"):
        Segmenter(tiny, device="cuda")


@pytest.mark.parametrize(
    "name, message",
    [
        (
            "no_metadata",
            "metadata 'ifa_rt.json': expected a JSON extra file (an ifa_rt artifact), got none",
        ),
        (
            "bad_json",
            "metadata 'ifa_rt.json': expected JSON, got a parse error at byte 3: syntax error "
            "while parsing object key - invalid literal; last read: '{no'; expected string literal",
        ),
        (
            "bad_version",
            "metadata 'ifa_rt.json': 'format_version': expected 1 (the versions this runtime reads), got 99",
        ),
        (
            "missing_key",
            "metadata 'ifa_rt.json': 'palette': expected a value (required key), got nothing",
        ),
        ("no_logits", "method 'logits': expected a scripted method (docs/artifact.md), got none"),
        ("truncated", "not a readable TorchScript archive: "),
        ("random", "not a readable TorchScript archive: "),
    ],
)
def test_bad_artifacts(name, message):
    path = fixture_dir() / f"{name}.ifa.pt"
    with pytest.raises(RuntimeError) as err:
        Segmenter(path)
    assert str(err.value).startswith(f"failed to load artifact '{path}': {message}")
