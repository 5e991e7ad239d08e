"""`ifa-rt info`: the bundled model's files, classes and gates, the data folder and the
compiled-package cache, as text and as JSON, checked against the files themselves."""

from __future__ import annotations

import json
import re
import shutil
import zipfile

from ifa_rt import Segmenter
from ifa_rt.bundled import BUNDLED_DIR, resolve
from ifa_rt.cli import main
from ifa_rt.deploy.artifact import load_artifact
from ifa_rt.deploy.metadata import EXTRA_FILE
from ifa_rt.side_files import file_sha256


def _info(capsys, *args: str) -> dict:
    assert main(["info", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_the_bundled_model_its_files_classes_and_gates(capsys):
    info = _info(capsys)
    (camvid,) = [m for m in info["models"] if m["name"] == "camvid"]
    _, meta = load_artifact(resolve("camvid"))
    assert camvid["classes"] == meta["classes"] and camvid["num_classes"] == 11
    assert camvid["sha256"] == file_sha256(resolve("camvid"))
    roles = {f["role"]: f for f in camvid["files"]}
    artifact = roles["artifact (TorchScript)"]
    assert artifact["bytes"] == (BUNDLED_DIR / "camvid.ifa.pt").stat().st_size
    assert {"training checkpoint", "int8 calibration (observers + gate)", "bf16 gate"} <= set(roles)
    bf16 = json.loads((BUNDLED_DIR / "camvid.bf16.json").read_text())["gate"]
    assert camvid["gates"]["bf16"]["label_agreement"] == bf16["label_agreement"]
    assert camvid["gates"]["bf16"]["usable"] is True
    int8 = camvid["gates"]["int8"]
    assert int8["passed"] and int8["matches_artifact"] and 0.99 <= int8["label_agreement"] < 1
    assert camvid["gates"]["fp16"] is None
    assert "plan" not in camvid  # only with --plan: it builds an engine


def test_text_is_readable(capsys):
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "model camvid: preset camvid-lite0, 11 classes, fused form" in text
    assert "  classes: sky, building, pole, road, pavement, tree, sign-symbol" in text
    size = (BUNDLED_DIR / "camvid.ifa.pt").stat().st_size / 2**20
    assert re.search(rf"\n    camvid\.ifa\.pt +{size:.1f} MiB  artifact \(TorchScript\)\n", text)
    assert "    int8: passed: label agreement 99." in text
    assert "    fp16: no gate" in text
    assert "compiled-package cache: " in text and "data folder: " in text


def test_plan_size_is_the_engines(capsys):
    (camvid,) = _info(capsys, "camvid", "--plan", "360x480")["models"]
    engine = Segmenter("camvid", precision="fp32", runtime="jit", shapes=[(360, 480)], threads=1)
    plan = engine.plan
    assert camvid["plan"]["total_bytes"] == plan["total_bytes"] > plan["arena"]["bytes"] > 2**20
    assert camvid["plan"]["buckets"] == [[1, 360, 480]]


def test_a_gate_of_another_artifact_is_not_usable(tiny, tmp_path, capsys):
    model = tmp_path / "tiny.ifa.pt"
    shutil.copyfile(tiny, model)
    shutil.copyfile(BUNDLED_DIR / "camvid.bf16.json", tmp_path / "tiny.bf16.json")
    (entry,) = _info(capsys, str(model))["models"]
    gate = entry["gates"]["bf16"]
    assert gate["passed"] and not gate["matches_artifact"] and not gate["usable"]
    assert entry["gates"]["int8"] is None and entry["num_classes"] == 5
    assert main(["info", str(model)]) == 0
    assert "    bf16: not usable: measured on another artifact" in capsys.readouterr().out


def test_cache_packages_are_named_by_model_and_precision(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IFA_RT_CACHE", str(tmp_path))
    _, meta = load_artifact(resolve("camvid"))
    meta["aoti"] = {"precision": "int8", "buckets": [[1, 360, 480]], "threads": 2,
                    "output": "coarse_logits"}  # fmt: skip
    digest = file_sha256(resolve("camvid"))[:16]
    with zipfile.ZipFile(tmp_path / f"{digest}-0123456789abcdef.pt2", "w") as package:
        package.writestr(f"package/extra/{EXTRA_FILE}", json.dumps(meta))
    (tmp_path / "broken.pt2").write_bytes(b"not a zip")
    cache = _info(capsys)["cache"]
    assert cache["folder"] == str(tmp_path) and cache["from"] == "$IFA_RT_CACHE"
    good, broken = cache["packages"]  # sorted by file name
    assert (good["model"], good["precision"], good["buckets"]) == (
        "camvid",
        "int8",
        [[1, 360, 480]],
    )
    assert broken["error"].startswith("unreadable package: ")
    assert cache["total_bytes"] == good["bytes"] + broken["bytes"]
    assert main(["info"]) == 0
    assert "camvid  int8  buckets BxHxW 1x360x480  2 threads  coarse logits out" in (
        capsys.readouterr().out
    )


def test_missing_data_folder_says_how_to_set_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("IFA_RT_DATA", str(tmp_path / "gone"))
    assert _info(capsys)["data"] == {
        "folder": str(tmp_path / "gone"), "from": "$IFA_RT_DATA", "exists": False, "datasets": []
    }  # fmt: skip
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert f"data folder: {tmp_path / 'gone'} ($IFA_RT_DATA; missing)" in text
    assert "  set IFA_RT_DATA=/path/to/data" in text


def test_unknown_model_is_an_error(capsys):
    assert main(["info", "no-such-model"]) == 1
    assert "ifa-rt info: error: info: 'model': expected a bundled model name" in (
        capsys.readouterr().err
    )


def test_data_folder_lists_its_datasets(camvid_root, monkeypatch, capsys):
    monkeypatch.setenv("IFA_RT_DATA", str(camvid_root.parent))
    data = _info(capsys)["data"]
    assert data["exists"] and "camvid" in data["datasets"]
