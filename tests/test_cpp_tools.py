"""The installed C++ tools (ifa-rt-bench, ifa-rt-segment): --help, and models by name."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ifa_rt

BIN = Path(ifa_rt._core.__file__).parent / "bin"
TOOLS = ["ifa-rt-bench", "ifa-rt-segment"]


def tool(name: str) -> Path:
    """The installed tool's path; skips where it was not built (ifa-rt-segment needs stb)."""
    path = BIN / name
    if not path.is_file():
        pytest.skip(f"{path} not built (ifa-rt-segment needs libstb-dev)")
    return path


def run(args: list, **env: str) -> subprocess.CompletedProcess:
    """Run a tool with extra environment variables ('' removes one)."""
    environ = {**os.environ, **env}
    environ = {k: v for k, v in environ.items() if v != ""}
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, env=environ
    )


@pytest.mark.parametrize("flag", ["--help", "-h"])
@pytest.mark.parametrize("name", TOOLS)
def test_help_prints_usage_on_stdout_and_exits_0(name, flag):
    out = run([tool(name), flag])
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: {name} MODEL ")
    assert "--model MODEL" in out.stdout and "bundled model name" in out.stdout
    assert out.stderr == ""


@pytest.mark.parametrize("name", TOOLS)
def test_bad_usage_prints_usage_on_stderr_and_exits_2(name):
    out = run([tool(name)])
    assert out.returncode == 2
    assert out.stderr.startswith(f"usage: {name} ") and out.stdout == ""


def test_model_by_name_from_ifa_rt_models(tiny, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "mini.ifa.pt").symlink_to(tiny)
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    args = [tool("ifa-rt-bench"), "--model", "mini", "--shapes", "32x48", "--iters", "2"]
    out = run([*args, "--threads", "1"], IFA_RT_MODELS=f"{elsewhere}:{models}")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"ifa-rt-bench: {models / 'mini.ifa.pt'} on cpu")


def test_unknown_name_lists_the_bundled_models_and_the_folders_searched(tmp_path):
    out = run([tool("ifa-rt-bench"), "nope", "--shapes", "32x48"], IFA_RT_MODELS=str(tmp_path))
    assert out.returncode == 1
    assert "'model': expected an artifact path or a bundled model name (camvid), got 'nope'" in (
        out.stderr
    )
    assert f"searched {tmp_path}, " in out.stderr


def test_segment_the_bundled_model_by_name(camvid_val_paths, tmp_path):
    """`camvid` resolves without IFA_RT_MODELS and segments a real CamVid frame."""
    out = run(
        [tool("ifa-rt-segment"), "--model", "camvid", tmp_path, camvid_val_paths[0]],
        IFA_RT_MODELS="",
    )
    assert out.returncode == 0, out.stderr
    assert "1 images, p50" in out.stdout
    labels = np.asarray(Image.open(tmp_path / f"{camvid_val_paths[0].stem}_labels.png"))
    assert labels.shape == (360, 480)
    # A street scene: several of CamVid's 11 classes, none outside them.
    assert len(np.unique(labels)) >= 4 and labels.max() < 11
