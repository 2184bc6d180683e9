"""The package's import graph: no cycles, and no import up the module map of
docs/DESIGN.md. Imports inside functions count: they run as surely as the others.
Imports under ``if TYPE_CHECKING:`` never run: they name, for annotations, the types a
function takes from a layer above (a run object the pipeline builds and the figures
draw), and are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "latentpath"

#: the module map's layers, lowest first: a module imports only from layers below its
#: own (docs/DESIGN.md, "Module map")
LAYERS = [
    {"checks", "device", "allocator", "adam", "modelfiles", "io", "distributed", "rundir"},
    {"latentpath"},  # the package itself: its version
    {"graph", "windows", "rvae"},
    {"synth", "latent", "pfm"},
    {"atoms", "discovery", "tracks"},
    {"evaluate", "figures", "report"},
    {"pipeline"},
    {"scale"},
    {"cli"},
    {"__main__"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Every latentpath module ``path`` (or ``source``, as if it were ``path``) imports,
    at any depth of its code, except for annotations only (``if TYPE_CHECKING:``)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text() if source is None else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            else:
                found.add(node.module)
    return {module for module in found if module.split(".")[0] == "latentpath"}


def _graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def _top(module: str) -> str:
    """``latentpath.pipeline.stem`` -> ``pipeline``; the package itself -> ``latentpath``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state: dict[str, int] = {}
    trail: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        trail.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*trail[trail.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        trail.pop()
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_every_module_has_a_layer():
    missing = sorted({_top(m) for m in _graph()} - set(RANK))
    assert not missing, f"modules missing from the layers of the module map: {missing}"


def test_no_import_cycle_between_modules():
    edges: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        edges.setdefault(_top(module), set()).update(
            _top(other) for other in imported if _top(other) != _top(module))
    assert _cycle(edges) is None, f"import cycle: {' -> '.join(_cycle(edges))}"


def test_no_import_cycle_inside_a_package():
    edges = {module: {other for other in imported if other != module}
             for module, imported in _graph().items()}
    # a package's __init__ gathers its modules; a module importing a sibling through
    # the package is the sibling's import, not the package's
    for module in edges:
        edges[module] = {other for other in edges[module]
                         if not (module.startswith(other + ".") and _top(other) == _top(module))}
    assert _cycle(edges) is None, f"import cycle: {' -> '.join(_cycle(edges))}"


def test_no_import_runs_up_the_module_map():
    upward = sorted(f"{module} imports {other}" for module, imported in _graph().items()
                    for other in imported
                    if _top(other) != _top(module) and RANK[_top(other)] >= RANK[_top(module)])
    assert not upward, "imports up the module map of docs/DESIGN.md:\n" + "\n".join(upward)


@pytest.mark.parametrize(("edges", "cyclic"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"a"}}, True),
])
def test_the_cycle_finder_finds_cycles(edges, cyclic):
    assert (_cycle(edges) is not None) == cyclic


def test_imports_for_annotations_only_are_not_counted_and_the_others_are():
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from latentpath.pipeline import StemRun\n"
              "def f():\n    from latentpath.cli import main\n"
              "if True:\n    import latentpath.scale\n")
    assert _imports(PACKAGE / "figures.py", source) == {"latentpath.cli", "latentpath.scale"}
