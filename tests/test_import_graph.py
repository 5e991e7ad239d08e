"""The package's modules import each other in one direction only: no import circles.

Every import counts, also one inside a function: a late import hides a circle from the
interpreter, not from a reader. A package's `__init__` importing its own submodules is the
way down, not a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import ifa_rt

ROOT = Path(ifa_rt.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """ifa_rt modules (and names) that `module` (file `path`) imports anywhere."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ifa_rt"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ifa_rt"))
    return found


def test_no_import_circles():
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {m: {t for t in _imports(p, m) if t in modules and t != m} for m, p in modules.items()}
    for m in graph:
        graph[m] = {t for t in graph[m] if not t.startswith(m + ".")}
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            visit(nxt, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for m in sorted(graph):
        visit(m, [], done)
    assert cycles == [], "import circles: " + "; ".join(" -> ".join(c) for c in cycles)
    assert "ifa_rt.runtime.inputs" in graph["ifa_rt.runtime.batcher"]  # the scan sees real edges


def test_command_line_parsing_lives_in_cli_only():
    """Library modules take plain arguments; only ifa_rt/cli/ builds argparse parsers."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.relative_to(ROOT).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("ArgumentParser", "add_argument", "add_parser")
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_lower_layers_never_import_upper_ones():
    """deploy (export, precision gates, compiled packages) sits below evaluation, training, the
    command line and the service, and metrics sits below everything but the data readers; late
    imports count too."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    upper = ("ifa_rt.evaluate", "ifa_rt.training", "ifa_rt.cli", "ifa_rt.serve")
    found = []
    for module, path in modules.items():
        imported = _imports(path, module)
        if module.startswith("ifa_rt.deploy"):
            found += [(module, t) for t in imported if t.startswith(upper)]
        if module == "ifa_rt.metrics":
            found += [(module, t) for t in imported if not t.startswith("ifa_rt.data")]
    assert found == [], found
    assert "ifa_rt.metrics" in _imports(modules["ifa_rt.deploy.gate"], "ifa_rt.deploy.gate")


def test_only_the_command_line_imports_training():
    """Training sits at the top beside the command line: no library module or the service
    imports ifa_rt.training, late imports and importlib names included."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}

    def is_training(name: str) -> bool:
        return name == "ifa_rt.training" or name.startswith("ifa_rt.training.")

    found = []
    for module, path in modules.items():
        if module.startswith(("ifa_rt.training", "ifa_rt.cli")):
            continue
        found += [(module, t) for t in _imports(path, module) if is_training(t)]
        found += [
            (module, node.value)
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_training(node.value)
        ]
    assert found == [], found
    assert "ifa_rt.training" in _imports(modules["ifa_rt.cli.train"], "ifa_rt.cli.train")


def test_the_runtime_never_imports_deploy_or_training():
    """The runtime decides what serves (`runtime.prepare`) from side files alone
    (`ifa_rt.side_files`, which imports nothing of the package): it never imports deploy or
    training, late imports included, so serving needs neither and they can use it."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    found = []
    for module, path in modules.items():
        imported = _imports(path, module)
        if module.startswith("ifa_rt.runtime"):
            found += [
                (module, t) for t in imported if t.startswith(("ifa_rt.deploy", "ifa_rt.train"))
            ]
        if module == "ifa_rt.side_files":
            found += [(module, t) for t in imported]
    assert found == [], found
    assert "ifa_rt.side_files" in _imports(
        modules["ifa_rt.runtime.prepare"], "ifa_rt.runtime.prepare"
    )
