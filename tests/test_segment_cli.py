"""`ifa-rt segment` on real CamVid frames, and the pure C++ `ifa-rt-segment` tool: files in,
label PNGs and overlays out, bad files reported by name without stopping the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ifa_rt
from _reliability import reference


def test_segment_cli_writes_labels_and_overlays(tiny, camvid_val_paths, tmp_path, capsys):
    from PIL import Image

    from ifa_rt.cli import main

    images = tmp_path / "in"
    images.mkdir()
    for p in camvid_val_paths[:2]:
        Image.open(p).resize((96, 72)).save(images / f"{p.stem}.png")
    out = tmp_path / "out"
    assert (
        main(["segment", str(images), "-o", str(out), "--model", str(tiny), "--threads", "1"]) == 0
    )
    stems = sorted(p.stem for p in images.iterdir())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}_{kind}.png" for s in stems for kind in ("labels", "overlay")
    )
    with Image.open(out / f"{stems[0]}_labels.png") as label_png:
        labels = np.asarray(label_png)
        assert label_png.mode == "P" and labels.shape == (72, 96) and labels.max() < 5
    with Image.open(out / f"{stems[0]}_overlay.png") as overlay:
        assert overlay.width == 2 * 96 and overlay.height > 72  # image | overlay, legend below
    text = capsys.readouterr().out
    assert "2 images: p50 " in text and "fallback runs 0" in text and "classes found: " in text
    assert main(["segment", str(tmp_path / "nope"), "-o", str(out), "--model", str(tiny)]) == 1
    assert capsys.readouterr().err == (
        "ifa-rt segment: error: segment: 'inputs': expected image or video files, folders, glob "
        f"patterns, stream URLs or webcams, got '{tmp_path / 'nope'}' (no such file or folder)\n"
    )


def test_segment_cli_keeps_going_past_bad_images_and_never_overwrites(
    tiny, camvid_val_paths, tmp_path, capsys
):
    """An unreadable or refused image is reported by name, the rest are written under
    distinct names (a.png / a.jpg, d1/x.png / d2/x.png), and the exit status is 1."""
    from PIL import Image

    from ifa_rt.cli import main

    src = Image.open(camvid_val_paths[0]).convert("RGB").resize((96, 72))
    (tmp_path / "d1").mkdir()
    (tmp_path / "d2").mkdir()
    inputs = [
        tmp_path / "a.png",
        tmp_path / "a.jpg",
        tmp_path / "d1" / "x.png",
        tmp_path / "d2" / "x.png",
        tmp_path / "broken.png",
        tmp_path / "tiny.png",
    ]
    for p in inputs[:4]:
        src.save(p)
    inputs[4].write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    src.resize((8, 8)).save(inputs[5])  # below the artifact's min_size (16): refused
    out = tmp_path / "out"
    args = ["segment", *map(str, inputs), "-o", str(out), "--model", str(tiny), "--threads", "1"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert f"{inputs[4]}: error: " in captured.err and f"{inputs[5]}: error: " in captured.err
    assert "2 of 6 images failed" in captured.err
    assert "4 images: p50 " in captured.out
    labels = sorted(p.name for p in out.iterdir() if p.name.endswith("_labels.png"))
    assert labels == sorted(
        [
            f"{tmp_path.name}_a_png_labels.png",
            f"{tmp_path.name}_a_jpg_labels.png",
            "d1_x_png_labels.png",
            "d2_x_png_labels.png",
        ]
    )


def test_segment_tool_matches_torchscript(tiny, camvid_val_paths, tmp_path):
    """The pure C++ ifa-rt-segment (stb_image in, label PNG out) gives TorchScript's labels."""
    import subprocess

    from PIL import Image

    tool = Path(ifa_rt._core.__file__).parent / "bin" / "ifa-rt-segment"
    if not tool.is_file():
        pytest.skip(f"{tool} not built (needs libstb-dev)")
    image_path = tmp_path / "image.png"
    Image.open(camvid_val_paths[0]).resize((120, 90)).save(image_path)
    out = tmp_path / "out"
    run = subprocess.run(
        [str(tool), str(tiny), str(out), str(image_path), "--threads", "1"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "1 images, p50" in run.stdout
    labels = np.asarray(Image.open(out / "image_labels.png"))
    want = reference(tiny, [np.array(Image.open(image_path).convert("RGB"))])
    np.testing.assert_array_equal(labels, want[0])
    assert np.asarray(Image.open(out / "image_color.png")).shape == (90, 120, 3)
