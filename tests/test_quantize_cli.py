"""`ifa-rt quantize` keeps its gate held out: calibration never draws from the recordings the
gate is measured on, unless asked to (and then the record says so)."""

from __future__ import annotations

import pytest

from ifa_rt.cli.quantize import _held_out, _trained_on
from ifa_rt.data import camvid


def test_calibration_drops_the_gate_recordings(camvid_root):
    gate = camvid("train+val", camvid_root).keep_sequences(["0006R0"])
    calibration, overlap = _held_out(camvid("train", camvid_root), gate, allow_overlap=False)
    assert overlap == []
    assert calibration.sequences() == ["0001TP", "0016E5"]
    assert len(calibration) == 62 + 204


def test_overlap_is_kept_only_when_allowed_and_recorded(camvid_root):
    gate = camvid("train+val", camvid_root).keep_sequences(["0006R0"])
    calibration, overlap = _held_out(camvid("train", camvid_root), gate, allow_overlap=True)
    assert overlap == ["0006R0"] and "0006R0" in calibration.sequences()


def test_a_calibration_split_of_only_gate_recordings_is_refused(camvid_root):
    with pytest.raises(ValueError, match=r"has only the gate's recordings \['0016E5'\]"):
        _held_out(camvid("val", camvid_root), camvid("val", camvid_root), allow_overlap=False)


def test_the_record_says_whether_the_model_trained_on_the_gate_recordings(tiny):
    from ifa_rt.bundled import resolve

    # The shipped model trained on every CamVid recording (stage 2), the gate's included.
    assert _trained_on(resolve("camvid"), ["0006R0"]) == ["0006R0"]
    assert _trained_on(resolve("camvid"), ["0099XX"]) == []
    assert _trained_on(tiny, ["0006R0"]) is None  # its metadata names no training data
