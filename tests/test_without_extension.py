"""Model, data, deploy and train import and work without the compiled extension.

A user can build, train and export a model on a machine where the C++ runtime was not built;
only `Segmenter` (and what runs on it) needs `_core`, and says so when it is missing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_export_without_the_extension(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys

        class NoExtension:  # the build products are absent: importing them fails
            def find_spec(self, name, path=None, target=None):
                if name in ("ifa_rt._core", "ifa_rt._build_info"):
                    raise ImportError(f"No module named {{name!r}} (simulated: not built)")
                return None

        sys.meta_path.insert(0, NoExtension())
        import torch
        import ifa_rt, ifa_rt.data, ifa_rt.deploy, ifa_rt.model, ifa_rt.training  # noqa: F401
        from ifa_rt.deploy.artifact import load_artifact

        torch.manual_seed(0)
        model = ifa_rt.build_model("camvid-r18").eval()
        ifa_rt.export(model, {str(tmp_path / "r18.ifa.pt")!r})
        scripted, meta = load_artifact({str(tmp_path / "r18.ifa.pt")!r})
        labels = scripted(torch.zeros(1, 64, 96, 3, dtype=torch.uint8))
        print(tuple(labels.shape), meta["preset"], "ifa_rt._core" in sys.modules)
        try:
            ifa_rt.Segmenter
        except ImportError as exc:
            print("Segmenter:", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "(1, 64, 96) camvid-r18 False"
    assert lines[1].startswith("Segmenter: No module named 'ifa_rt._core'")
