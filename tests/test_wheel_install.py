"""Install anywhere: the README's out-of-repository recipe, run for real, and the refusal of
an isolated build.

The slow tests follow README.md "Install outside the repository" step by step: a fresh venv
(no system site-packages) gets the pinned torch and the build dependencies, a wheel is built
from this checkout with `--no-build-isolation`, installed into that venv, and used from a
folder outside the repository: Python's `Segmenter("camvid")` and the C++ tool on a real
CamVid frame, `find_package(ifa_rt)`, and the import-time torch check. ccache (CMakeLists.txt)
with CCACHE_BASEDIR set to the test's folder lets a rerun reuse the compile (~100 s cold on 2
cores).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TORCH_PIN = "torch==2.13.0"
BUILD_DEPS = ["scikit-build-core", "pybind11"]
INSTRUCTION = (
    "ifa_rt must be built against the torch it runs with: "
    "pip install scikit-build-core pybind11 && pip install --no-build-isolation <path>"
)
# What the wheel must carry besides Python files: the bundled model and its companions, the
# recipes, and the C++ runtime (library, tools, headers, CMake package).
PACKAGE_FILES = [
    "ifa_rt/bundled/camvid.ifa.pt",
    "ifa_rt/bundled/camvid.ckpt.pt",
    "ifa_rt/bundled/camvid.int8.pt",
    "ifa_rt/bundled/camvid.bf16.json",
    "ifa_rt/recipes/camvid-lite0.toml",
    "ifa_rt/recipes/camvid-lite0-all.toml",
    "ifa_rt/_build_info.py",
    "ifa_rt/lib/libifa_rt.so",
    "ifa_rt/bin/ifa-rt-bench",
    "ifa_rt/bin/ifa-rt-segment",
    "ifa_rt/include/ifa_rt/segmenter.h",
    "ifa_rt/share/cmake/ifa_rt/ifa_rtConfig.cmake",
]


def _torch_for_build():
    """cmake/torch_for_build.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location(
        "torch_for_build", REPO / "cmake" / "torch_for_build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(args: list, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run a command; fail with its output when it fails."""
    out = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{args} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


# --- The refusal of an isolated build (fast) -------------------------------------------------


def test_the_build_finds_the_installed_torch():
    import torch
    import torch.utils

    out = _run([sys.executable, REPO / "cmake" / "torch_for_build.py"])
    assert out.stdout.strip() == f"{torch.utils.cmake_prefix_path};{torch.__version__}"


def test_isolated_environments_are_recognised():
    find = _torch_for_build().isolated_env_folder
    assert find(["/tmp/pip-build-env-x1y2/overlay/lib/python3.11/site-packages/torch"])  # pip
    assert find(["/tmp/build-env-abc"])  # pypa/build's venv
    assert find(["/root/.cache/uv/builds-v0/.tmpXYZ"])  # uv
    assert find(["", "/work/venv/lib/python3.11/site-packages/torch"]) is None


def test_a_torch_installed_in_an_isolated_environment_is_refused(tmp_path):
    """Were a frontend to install a torch for the build, it would not be the user's: refused."""
    fake = tmp_path / "pip-build-env-abc" / "overlay" / "site-packages" / "torch"
    (fake / "utils").mkdir(parents=True)
    (fake / "__init__.py").write_text("__version__ = '2.14.1+cu130'\n")
    (fake / "utils" / "__init__.py").write_text("cmake_prefix_path = '/nowhere'\n")
    env = {**os.environ, "PYTHONPATH": str(fake.parent)}
    out = subprocess.run(
        [sys.executable, REPO / "cmake" / "torch_for_build.py"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(INSTRUCTION)
    assert "torch 2.14.1+cu130 from an isolated build environment" in out.stderr


def test_no_torch_at_all_says_to_install_it_first():
    # -S: no site-packages, as in a venv where torch was never installed.
    out = subprocess.run(
        [sys.executable, "-S", REPO / "cmake" / "torch_for_build.py"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.startswith(INSTRUCTION) and f"pip install {TORCH_PIN} first" in out.stderr


def test_plain_pip_install_stops_within_seconds_with_the_instruction(tmp_path):
    """pip's isolated build environment has no torch: CMake stops before compiling anything.

    The build dependencies come from the configured index; torch is never downloaded."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist"]
        + [f"--config-settings=build-dir={tmp_path / 'build'}", REPO],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    seconds = time.perf_counter() - t0
    log = out.stdout + out.stderr
    if "Installing build dependencies" in log and "No matching distribution found" in log:
        pytest.skip("scikit-build-core/pybind11 not available from the package index")
    assert out.returncode != 0 and not list((tmp_path / "dist").glob("*.whl"))
    assert INSTRUCTION in log, log[-3000:]
    assert "Building CXX object" not in log and "torch-2" not in log  # nothing compiled, no torch
    assert seconds < 60, f"took {seconds:.0f} s"


# --- The README's recipe, for real (slow) ----------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, wheel, timings): a fresh venv with the pinned torch and a wheel of this checkout
    built and installed exactly as README.md "Install outside the repository" says."""
    root = tmp_path_factory.mktemp("wheel_install")
    venv = root / "venv"
    times = {}
    env = {**os.environ, "CCACHE_BASEDIR": str(root)}
    for name in ("PYTHONPATH", "IFA_RT_BUILD_TESTS", "IFA_RT_CUDA"):  # the README's plain build
        env.pop(name, None)
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2))
    t0 = time.perf_counter()
    # The base interpreter, so the new venv inherits nothing from the test's venv.
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv])
    pip = [venv / "bin" / "python", "-m", "pip"]
    _run([*pip, "install", "-q", TORCH_PIN, *BUILD_DEPS], env=env)
    times["venv_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dist = root / "dist"
    _run(
        [*pip, "wheel", "--no-build-isolation", "--no-deps", "-w", dist, REPO]
        + [f"--config-settings=build-dir={root / 'build'}"],
        env=env,
        timeout=1200,
    )
    times["wheel_s"] = time.perf_counter() - t0
    (wheel,) = dist.glob("ifa_rt-*.whl")
    t0 = time.perf_counter()
    _run([*pip, "install", "-q", wheel], env=env)
    times["install_s"] = time.perf_counter() - t0
    print(f"\nwheel install timings: {times}")
    return venv, wheel, times


def _outside(venv: Path, tmp_path: Path, code: str, **env: str):
    """Run Python code with the installed venv from a folder outside the repository."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IFA_RT_MODELS")}
    return _run(
        [venv / "bin" / "python", "-c", textwrap.dedent(code)],
        cwd=tmp_path,
        env={**environ, **env},
    )


def _site_packages(venv: Path) -> Path:
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    return site


@pytest.mark.slow
def test_wheel_carries_the_bundled_model_and_the_cpp_runtime(installed):
    _, wheel, _ = installed
    with zipfile.ZipFile(wheel) as z:
        sizes = {i.filename: i.file_size for i in z.infolist()}
    missing = [name for name in PACKAGE_FILES if name not in sizes]
    assert not missing, f"not in {wheel.name}: {missing}"
    for name in PACKAGE_FILES:
        source = REPO / "python" / name
        if source.is_file():  # the whole file, not a pointer or a truncated copy
            assert sizes[name] == source.stat().st_size, name
    assert not [n for n in sizes if "__pycache__" in n or n.startswith(("tests/", "cpp/"))]


@pytest.mark.slow
def test_installed_wheel_segments_a_real_frame_outside_the_repository(
    installed, camvid_val_paths, tmp_path
):
    import ifa_rt

    venv, _, _ = installed
    frame = camvid_val_paths[0]
    code = f"""
        import numpy as np, ifa_rt
        from PIL import Image
        assert ifa_rt.__file__.startswith({str(venv)!r}), ifa_rt.__file__
        seg = ifa_rt.Segmenter("camvid", precision="fp32", shapes=[(360, 480)], threads=2)
        labels = seg(np.asarray(Image.open({str(frame)!r}).convert("RGB")))
        np.save("labels.npy", labels)
        print(seg.stats()["engine"])
    """
    _outside(venv, tmp_path, code)
    labels = np.load(tmp_path / "labels.npy")
    # The same model and options in this checkout's own build give the same labels.
    seg = ifa_rt.Segmenter("camvid", precision="fp32", shapes=[(360, 480)], threads=2)
    want = seg(np.asarray(Image.open(frame).convert("RGB")))
    assert labels.shape == (360, 480) and labels.dtype == np.uint8
    assert np.mean(labels == want) > 0.999
    assert len(np.unique(labels)) >= 4  # a street scene, not one class
    out = _run([venv / "bin" / "ifa-rt", "--version"], cwd=tmp_path)
    assert out.stdout.strip() == f"ifa-rt {ifa_rt.__version__}"


@pytest.mark.slow
def test_installed_cpp_tool_finds_the_bundled_model_by_name(installed, camvid_val_paths, tmp_path):
    """A wheel's tools find <pkg>/bundled beside <pkg>/bin (no source tree, no IFA_RT_MODELS)."""
    venv, _, _ = installed
    tool = _site_packages(venv) / "ifa_rt" / "bin" / "ifa-rt-segment"
    if not tool.is_file():
        pytest.skip("ifa-rt-segment not built (needs libstb-dev)")
    environ = {k: v for k, v in os.environ.items() if k != "IFA_RT_MODELS"}
    args = [tool, "--model", "camvid", tmp_path / "out", camvid_val_paths[0], "--threads", "2"]
    out = _run(args, cwd=tmp_path, env=environ)
    assert "1 images, p50" in out.stdout
    assert (tmp_path / "out" / f"{camvid_val_paths[0].stem}_labels.png").is_file()


@pytest.mark.slow
def test_installed_cmake_package_names_the_models_folder(installed, tmp_path):
    """find_package(ifa_rt) from the installed wheel sets ifa_rt_MODELS_DIR to its bundled dir."""
    venv, _, _ = installed
    site = _site_packages(venv)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\nproject(app LANGUAGES CXX)\n"
        "find_package(ifa_rt REQUIRED)\n"
        'message(STATUS "models: ${ifa_rt_MODELS_DIR}")\n'
    )
    out = _run(
        [
            "cmake",
            "-S",
            tmp_path,
            "-B",
            tmp_path / "build",
            f"-Difa_rt_DIR={site}/ifa_rt/share/cmake/ifa_rt",
        ],
        cwd=tmp_path,
    )
    line = next(x for x in out.stdout.splitlines() if "-- models: " in x)
    models = Path(line.split("-- models: ", 1)[1])
    assert models.resolve() == (site / "ifa_rt" / "bundled").resolve()
    assert (models / "camvid.ifa.pt").is_file()


@pytest.mark.slow
def test_installed_wheel_refuses_another_torch(installed, tmp_path):
    """The import-time check holds for the wheel: it records the torch it was built with, and
    importing the runtime refuses another one (exporting and training, which never load the
    extension, still import)."""
    venv, _, _ = installed
    code = """
        import torch
        built_with = torch.__version__
        torch.__version__ = "2.12.0"  # as if another torch were installed after the wheel
        import ifa_rt.deploy.export
        try:
            from ifa_rt import Segmenter
        except ImportError as e:
            print(e)
        else:
            raise SystemExit("imported under another torch")
    """
    out = _outside(venv, tmp_path, code)
    import torch

    assert f"built against torch {torch.__version__}, but torch 2.12.0 is installed" in out.stdout
