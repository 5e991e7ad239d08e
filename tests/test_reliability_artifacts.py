# ruff: noqa: E501  (exact error messages are asserted verbatim)
"""Bad artifacts: each fails with a clear RuntimeError (ifa_rt::Error) naming the file and what
was expected, never a crash, and leaves nothing half-built: loading a good artifact right after
a failure works and gives reference results. Artifacts whose graph breaks the output contract
(docs/artifact.md) are caught at warm-up, or at the call that sees it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from _reliability import fixture_dir, rand_images, reference
from ifa_rt import Segmenter, _core

BATCH = rand_images(3, 32, 48, seed=21)
TALL = rand_images(1, 41, 48, seed=22)


@pytest.fixture(scope="module")
def want(tiny):
    return reference(tiny, BATCH)


def _assert_good_still_loads(tiny, want) -> None:
    """Constructing again after a failure works: nothing was left half-initialised."""
    # No planned shapes: no warm-up, so the check stays cheap (the calls take the JIT path).
    np.testing.assert_array_equal(Segmenter(tiny)(BATCH), want)


ARCHIVE = "not a readable TorchScript archive: "
CORRUPT = " (a truncated or corrupt file)"
META = "metadata 'ifa_rt.json': "
COMPILE = (
    f"{ARCHIVE}its TorchScript code does not compile with torch {_core.torch_version()} "
    "(a corrupt file, or code from a newer torch)"
)
LOAD_ERRORS = [
    # (file, the message after "failed to load artifact '<path>': ", exact or prefix)
    ("../missing.ifa.pt", "no such file or not readable", True),
    (
        "empty",
        ARCHIVE + "zip: expected an end-of-central-directory record, got a 0-byte file" + CORRUPT,
        True,
    ),
    (
        "../truncated",
        ARCHIVE + "zip: expected an end-of-central-directory record, got none" + CORRUPT,
        True,
    ),
    (
        "../random",
        ARCHIVE + "zip: expected an end-of-central-directory record, got none" + CORRUPT,
        True,
    ),
    # Checked against the file before LibTorch reads it (it trusts every length, checks no CRC).
    (
        "bitflip",
        re.escape(ARCHIVE)
        + r"zip: record \d+ \('tiny\.ifa/data\.pkl'\) fails its CRC-32 check"
        + re.escape(CORRUPT),
        "re",
    ),
    (
        "huge_length",
        re.escape(ARCHIVE)
        + r"zip: record \d+ \('tiny\.ifa/data\.pkl'\) needs 2147483648 bytes at offset \d+, past the end of the \d+-byte file"
        + re.escape(CORRUPT),
        "re",
    ),
    ("newer_torch", ARCHIVE + "[enforce fail at inline_container.cc:", False),
    ("unknown_op", COMPILE, True),
    # Fuzzer finds: the first aborted the process (a compile error's message rendering threw),
    # the second segfaulted inside LibTorch (corrupt debug info read while reporting). Which
    # error LibTorch gives depends on what the process compiled before: only the prefix.
    ("fuzz-error-report-abort", ARCHIVE, False),
    ("fuzz-debug-info-segv", ARCHIVE, False),
    # Another: a corrupt length asked LibTorch for 30 GB; its CRC no longer matches.
    (
        "fuzz-huge-record",
        ARCHIVE
        + "zip: record 0 ('bad_version.ifa/extra/ifa_rt.json') fails its CRC-32 check"
        + CORRUPT,
        True,
    ),
    ("plain", META + "expected a JSON extra file (an ifa_rt artifact), got none", True),
    ("../no_metadata", META + "expected a JSON extra file (an ifa_rt artifact), got none", True),
    (
        "../bad_json",
        META + "expected JSON, got a parse error at byte 3: syntax error while parsing object "
        "key - invalid literal; last read: '{no'; expected string literal",
        True,
    ),
    (
        "../bad_version",
        META + "'format_version': expected 1 (the versions this runtime reads), got 99",
        True,
    ),
    (
        "version2",
        META
        + "'format_version': expected 1 (the versions this runtime reads), got 2 (written by ifa_rt 9.0.0; this runtime is 0.1.0: upgrade it)",
        True,
    ),
    (
        "version_string",
        META + "'format_version': expected 1 (the versions this runtime reads), got '1'",
        True,
    ),
    (
        "version_huge",
        META + "'format_version': expected 1 (the versions this runtime reads), got 4294967297",
        True,
    ),
    ("classes_string", META + "'num_classes': expected a positive integer, got '5'", True),
    ("../missing_key", META + "'palette': expected a value (required key), got nothing", True),
    (
        "../no_logits",
        "method 'logits': expected a scripted method (docs/artifact.md), got none",
        True,
    ),
    ("two_inputs", "method 'forward': expected 1 input (images uint8 [B,H,W,3]), got 2", True),
    (
        "tuple_forward",
        "method 'forward': expected a Tensor result (docs/artifact.md), got Tuple[Tensor, Tensor]",
        True,
    ),
]


def _file(name: str):
    return (fixture_dir() / "bad" / f"{name}.ifa.pt").resolve()


@pytest.mark.parametrize(
    "name, message, exact", LOAD_ERRORS, ids=[c[0].lstrip("./") for c in LOAD_ERRORS]
)
def test_bad_artifact_fails_cleanly(tiny, want, name, message, exact):
    path = str(_file(name))
    options = _core.Options.from_map({"shapes": "32x48"})  # load fails before any planning
    with pytest.raises(RuntimeError) as err:
        _core.Segmenter(path, options)  # the C++ loader itself (Segmenter() checks the path first)
    expected = f"failed to load artifact '{path}': {message}"
    got = str(err.value)
    if exact == "re":
        assert re.fullmatch(re.escape(f"failed to load artifact '{path}': ") + message, got), got
    else:
        assert got == expected if exact else got.startswith(expected), got
    assert "\n" not in got  # one line: no C++ or TorchScript backtrace
    _assert_good_still_loads(tiny, want)


def test_missing_file_through_segmenter(tmp_path, tiny, want):
    missing = str(tmp_path / "nope.ifa.pt")
    with pytest.raises(ValueError) as err:
        Segmenter(missing)
    message = str(err.value)  # the bundled names it lists depend on the installation
    assert message.startswith(
        "Segmenter: 'model': expected an existing artifact file or a bundled model name ("
    )
    assert message.endswith(f"), got '{missing}' (no such file)")
    with pytest.raises(RuntimeError) as err:
        _core.Segmenter(str(tmp_path), _core.Options())  # a directory
    assert str(err.value).startswith(f"failed to load artifact '{tmp_path}': ")
    _assert_good_still_loads(tiny, want)


def test_newer_torch_archive_says_which_version():
    with pytest.raises(RuntimeError) as err:
        Segmenter(_file("newer_torch"))
    assert "Attempted to read a PyTorch file with version 99" in str(err.value)


# --- graphs that break the output contract ----------------------------------------------------

WARMUP = "Segmenter: warm-up of bucket 1x32x48 failed: "


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("float_labels", {}, WARMUP + "forward: expected uint8 [1,32,48], got float32 [1,32,48]"),
        ("rank4_labels", {}, WARMUP + "forward: expected uint8 [1,32,48], got uint8 [1,32,48,1]"),
        (
            "wrong_classes",
            {"plan_logits": True},
            WARMUP + "logits: expected float32 [1,11,32,48], got float32 [1,5,32,48]",
        ),
        (
            "raises",
            {"shapes": [(48, 32)]},
            "Segmenter: warm-up of bucket 1x48x32 failed: Segmenter: forward failed on input [1,48,32,3]: builtins.RuntimeError: boom",
        ),
    ],
)
def test_output_contract_checked_at_warm_up(tiny, want, name, options, message):
    options = {"shapes": [(32, 48)], **options}
    with pytest.raises(RuntimeError) as err:
        Segmenter(_file(name), **options)
    assert str(err.value) == message
    _assert_good_still_loads(tiny, want)


def test_output_contract_checked_per_call(tiny, want):
    # Unplanned (no warm-up saw them): the call that meets the bad output raises, and the
    # engine keeps serving the inputs it can.
    seg = Segmenter(_file("wrong_classes"))  # metadata: 11 classes, graph: 5
    assert seg.metadata["num_classes"] == 11
    np.testing.assert_array_equal(seg(BATCH), want)  # labels cannot show the class count
    with pytest.raises(RuntimeError) as err:
        seg.logits(BATCH[:1])
    assert str(err.value) == "logits: expected float32 [1,11,32,48], got float32 [1,5,32,48]"
    seg = Segmenter(_file("float_labels"))
    with pytest.raises(RuntimeError) as err:
        seg(BATCH)
    assert str(err.value) == "forward: expected uint8 [1,32,48], got float32 [1,32,48]"
    seg = Segmenter(_file("raises"), shapes=[(32, 48)])
    with pytest.raises(RuntimeError) as err:
        seg(TALL)
    assert (
        str(err.value)
        == "Segmenter: forward failed on input [1,41,48,3]: builtins.RuntimeError: boom"
    )
    np.testing.assert_array_equal(seg(BATCH), BATCH[..., 0])  # this graph returns channel 0


@pytest.mark.parametrize("runtime", ["static", "jit"])
def test_data_dependent_output_shape_is_caught_on_the_planned_path(runtime):
    # The graph returns 4x the rows for an almost white image. Warm-up (random images) cannot
    # see it; before the per-run check this overflowed the caller's buffer (heap corruption).
    seg = Segmenter(
        _file("data_shape"), shapes=[(32, 48)], max_batch=2, runtime=runtime, batch_invariant=False
    )
    white = np.full((2, 32, 48, 3), 255, np.uint8)
    for _ in range(3):
        with pytest.raises(RuntimeError) as err:
            seg(white)
        assert str(err.value) == "forward: expected uint8 [2,32,48], got uint8 [2,128,48]"
        np.testing.assert_array_equal(seg(BATCH), BATCH[..., 0])
    with pytest.raises(
        RuntimeError, match=r"^forward: expected uint8 \[1,33,48\], got uint8 \[1,132,48\]$"
    ):
        seg(np.full((1, 33, 48, 3), 255, np.uint8))  # the unplanned path checks too
