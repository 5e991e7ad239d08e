"""The package: the compiled extension, the torch guard, the public API and the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ifa_rt
from ifa_rt import _build_info, _core
from ifa_rt.cli import COMMANDS, main
from ifa_rt.runtime.extension import check_torch_matches


def test_extension_reports_versions():
    assert _core.version() == ifa_rt.__version__
    assert _core.torch_version() == torch.__version__ == _build_info.TORCH_VERSION
    assert _core.has_cuda_engine() == _build_info.WITH_CUDA


def test_cuda_engine_is_built_iff_torch_has_cuda():
    assert _core.has_cuda_engine() == (torch.version.cuda is not None)


def test_a_different_torch_is_refused_with_rebuild_instructions():
    with pytest.raises(ImportError) as info:
        check_torch_matches("2.13.0+cpu", "2.14.1+cu130")
    assert str(info.value) == (
        "ifa_rt: the compiled extension was built against torch 2.13.0+cpu, but torch "
        "2.14.1+cu130 is installed. Rebuild it against the installed torch: "
        "pip install --no-build-isolation --force-reinstall --no-deps ."
    )


def test_a_mismatched_build_blocks_the_runtime_only(tmp_path):
    """A stale extension (built for another torch) is refused when the runtime loads it, with
    rebuild instructions; exporting and training never load it, so they keep working."""
    code = (
        "import sys, types; info = types.ModuleType('ifa_rt._build_info');"
        "info.TORCH_VERSION = '0.0.1'; info.WITH_CUDA = False;"
        "sys.modules['ifa_rt._build_info'] = info\n"
        "import ifa_rt, ifa_rt.deploy.export, ifa_rt.deploy.quantize\n"
        "print('export ok', ifa_rt.export.__name__, '_core' in dir(ifa_rt))\n"
        "try:\n    ifa_rt.Segmenter\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.splitlines()
    assert lines[0] == "export ok export False"
    assert "built against torch 0.0.1" in lines[1] and "Rebuild it" in lines[1]
    assert "ifa_rt._core" not in out.stdout  # refused before the library was loaded


def test_public_api_is_lazy_and_complete():
    assert set(ifa_rt.__all__) <= set(dir(ifa_rt))
    assert callable(ifa_rt.build_model) and callable(ifa_rt.export)
    assert {"cityscapes-r50", "cityscapes-r50-aspp", "cityscapes-r101", "camvid-r18"} <= set(
        ifa_rt.presets()
    )
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        ifa_rt.nope  # noqa: B018


def test_cli_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    help_text = capsys.readouterr().out
    assert all(name in help_text for name in COMMANDS)


def test_cli_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"ifa-rt {ifa_rt.__version__}"
