"""The package's shape: imports only point down (no cycle), light command lines, one installed command."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "ignite_app"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The package's modules that ``path`` imports anywhere (function bodies included), statically."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            # `from a.b import c` imports a.b, or the module a.b.c when c is one
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    root = package.parent
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    return {module_name(p, root): imported_modules(p, modules, root) for p in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt] if nxt in path else [*path, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "ignite_app.runstate.checkpoint" in graph["ignite_app.app"]
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    # the check itself must be able to fail: a late import inside a function counts
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def f():\n    from pkg.a import x\n")
    assert find_cycle(import_graph(tmp_path / "pkg")) == ["pkg.a", "pkg.b", "pkg.a"]


def test_subpackages_import_only_downwards():
    layers = ["ignite_app.cli", "ignite_app.app", "ignite_app.reporting", "ignite_app.handlers"]
    graph = import_graph()
    for low_index, low in enumerate(layers[1:], start=1):
        for module, targets in graph.items():
            if module.startswith(low):
                upward = [t for t in targets if any(t.startswith(high) for high in layers[:low_index])]
                assert not upward, f"{module} imports {upward}, above it"


@pytest.mark.parametrize("module", ["ignite_app.cli.evaluate", "ignite_app.cli.predict"])
def test_the_evaluate_and_predict_commands_do_not_import_the_training_reports(module):
    code = (f"import sys, {module}, ignite_app.evaluation, ignite_app.prediction, ignite_app.device\n"
            "print(sorted(m for m in ('matplotlib', 'tensorboard', 'google_crc32c') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_one_installed_command_dispatches_to_every_command():
    installed = Path(sys.executable).parent / "ignite-app"  # the console script pip installed
    out = subprocess.run([str(installed), "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and all(f"  {c}" in out.stdout for c in ("train", "evaluate", "predict", "export"))
    out = subprocess.run([sys.executable, "-m", "ignite_app.cli", "evaluate", "--help"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("usage: ignite-app evaluate")
    out = subprocess.run([sys.executable, "-m", "ignite_app.cli", "trian"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown command 'trian'; did you mean 'train'?" in out.stderr
