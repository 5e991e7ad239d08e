"""Where real data comes from (ifa_rt.data.folders): an argument, then $IFA_RT_DATA, then the
platform data folder; never the package's location. A missing folder is an error that names
it and how to set it, for the dataset readers and for `ifa-rt bench` (no random pixels)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import ifa_rt
from ifa_rt.bench import load_images
from ifa_rt.cli import main
from ifa_rt.data.folders import (
    camvid,
    default_data_root,
    platform_data_dir,
    require_data_root,
)

HOW = (
    "set IFA_RT_DATA=/path/to/data (the folder holding camvid/ or cityscapes_sample/) "
    "or pass the folder explicitly"
)


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $IFA_RT_DATA, and a private $XDG_DATA_HOME (empty)."""
    monkeypatch.delenv("IFA_RT_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "ifa_rt" / "data"


def test_argument_then_env_then_platform_folder(monkeypatch, no_env, tmp_path):
    assert default_data_root() == no_env == platform_data_dir()
    package = Path(ifa_rt.__file__).resolve().parents[2]
    assert package not in default_data_root().parents  # not derived from the install location
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_root() == tmp_path / "home" / ".local" / "share" / "ifa_rt" / "data"
    monkeypatch.setenv("IFA_RT_DATA", str(tmp_path / "env"))
    assert default_data_root() == tmp_path / "env"
    assert default_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert require_data_root(tmp_path) == tmp_path  # exists


def test_missing_folder_names_it_its_origin_and_the_fix(monkeypatch, no_env, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        require_data_root(where="bench")
    assert str(err.value) == (
        f"bench: expected a data folder at '{no_env}' (the default when $IFA_RT_DATA is "
        f"unset), it does not exist; {HOW}"
    )
    monkeypatch.setenv("IFA_RT_DATA", str(tmp_path / "gone"))
    with pytest.raises(FileNotFoundError) as err:
        camvid("val")
    assert str(err.value) == (
        f"camvid reader (split 'val'): expected a data folder at '{tmp_path}/gone' "
        f"(from $IFA_RT_DATA), it does not exist; {HOW}"
    )
    with pytest.raises(FileNotFoundError, match=r"at '/nowhere' \(the folder given\)"):
        load_images((32, 32), 1, root=Path("/nowhere"))


def test_bench_without_data_fails_at_once_without_timing_random_pixels(monkeypatch, no_env, capsys):
    t0 = time.perf_counter()
    assert main(["bench", "camvid", "--shape", "64x96", "--reps", "1"]) == 1
    elapsed = time.perf_counter() - t0
    out, err = capsys.readouterr()
    assert err == (
        f"ifa-rt bench: error: bench: expected a data folder at '{no_env}' (the default when "
        f"$IFA_RT_DATA is unset), it does not exist; {HOW}\n"
    )
    assert "p50" not in out and elapsed < 5  # failed before building an engine


def test_bench_reads_the_data_root_argument(camvid_root, monkeypatch, no_env, capsys):
    args = ["bench", "camvid", "--shape", "64x96", "--reps", "2", "--threads", "1"]
    args += ["--precision", "fp32", "--runtime", "jit", "--data-root", str(camvid_root.parent)]
    assert main(args) == 0
    assert "1x64x96 real: " in capsys.readouterr().out
