"""Write the seed corpora for the fuzz targets (fuzz/run_fuzz.sh calls this).

Usage: python fuzz/make_corpus.py OUT_DIR

  OUT_DIR/metadata/*.json   valid ifa_rt.json documents (the fixture's and the exporter's
                            layout) and near-misses: each required key dropped or mistyped,
                            unknown versions, unicode escapes, deep nesting, odd numbers
  OUT_DIR/artifact/*.pt     the fixture artifacts of tests/fixtures/make_fixtures.py (the
                            tiny model and every broken one)
  OUT_DIR/json.dict         a libFuzzer dictionary of JSON tokens and metadata keys
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

FIXTURE_SCRIPT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "make_fixtures.py"
KEYS = [
    "format_version",
    "num_classes",
    "classes",
    "palette",
    "input",
    "min_size",
    "layout",
    "dtype",
    "channels",
    "color",
    "mean",
    "std",
    "ignore_index",
    "preset",
    "form",
    "ifa_rt_version",
    "torch_version",
    "config",
    "outputs",
]


def _fixtures():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metadata_seeds(meta: dict) -> dict[str, str]:
    """Named JSON texts: the valid document and one near-miss per way it can go wrong."""
    seeds = {"valid": json.dumps(meta), "valid_pretty": json.dumps(meta, indent=2)}
    for key in ["format_version", "num_classes", "classes", "palette", "input"]:
        seeds[f"drop_{key}"] = json.dumps({k: v for k, v in meta.items() if k != key})
        seeds[f"null_{key}"] = json.dumps({**meta, key: None})
        seeds[f"string_{key}"] = json.dumps({**meta, key: "x"})
    seeds["version_2"] = json.dumps({**meta, "format_version": 2, "ifa_rt_version": "9.0.0"})
    seeds["version_float"] = json.dumps({**meta, "format_version": 1.5})
    seeds["classes_257"] = json.dumps({**meta, "num_classes": 257})
    seeds["palette_300"] = json.dumps({**meta, "palette": [[300, 0, 0]] * meta["num_classes"]})
    seeds["input_nchw"] = json.dumps({**meta, "input": {**meta["input"], "layout": "NCHW"}})
    seeds["min_size_0"] = json.dumps({**meta, "input": {**meta["input"], "min_size": 0}})
    names = ["caf\u00e9", "\ud83d\ude00", 'a"b', "\\", "\t"]
    seeds["unicode"] = json.dumps({**meta, "classes": names[: meta["num_classes"]]})
    # Integers past int32/int64 (the format_version overflow found by fuzzing), non-integers.
    seeds["version_2p32"] = json.dumps({**meta, "format_version": 2**32 + 1})
    seeds["classes_2p63"] = json.dumps({**meta, "num_classes": 2**63})
    seeds["min_size_huge"] = json.dumps({**meta, "input": {**meta["input"], "min_size": 1e300}})
    seeds["deep"] = "[" * 70 + "]" * 70
    seeds["numbers"] = "[-0, 1e308, 1e309, -1e-400, 9007199254740993, 0.5e1, -]"
    seeds["surrogates"] = '["\\ud800", "\\udc00\\ud800", "\\ud83d\\u0041"]'
    seeds["empty"] = ""
    return seeds


def main(argv: list[str]) -> int:
    """Write the seed corpora and the dictionary into argv[0]; 0 on success."""
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    fx = _fixtures()
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    for name, text in metadata_seeds(fx.metadata()).items():
        (out / "metadata" / f"{name}.json").write_text(text, encoding="utf-8")
    (out / "artifact").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fx.main([tmp])
        for path in Path(tmp).glob("*.ifa.pt"):
            shutil.copy(path, out / "artifact" / path.name.replace(".ifa.pt", ".pt"))
    tokens = [
        '"{"',
        '"}"',
        '"["',
        '"]"',
        '":"',
        '","',
        '"true"',
        '"false"',
        '"null"',
        '"\\\\u"',
        '"\\\\ud83d"',
        '"-"',
        '"1e"',
        '"0."',
    ]
    tokens += [f'"\\"{k}\\""' for k in KEYS]
    (out / "json.dict").write_text("\n".join(tokens) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
