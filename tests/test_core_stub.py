"""The typed stub of the extension (`_core.pyi`) names exactly what the built `_core` has."""

from __future__ import annotations

import ast
from pathlib import Path

import ifa_rt
from ifa_rt import _core

STUB = Path(ifa_rt.__file__).parent / "_core.pyi"


def _public(names) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_stub_matches_the_extension():
    tree = ast.parse(STUB.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    modules = _public(n for n in dir(_core) if not isinstance(getattr(_core, n), type(_core)))
    assert functions | set(classes) == modules
    for name, node in classes.items():
        stubbed = _public(m.name for m in node.body if isinstance(m, ast.FunctionDef))
        assert stubbed == _public(vars(getattr(_core, name))), name
