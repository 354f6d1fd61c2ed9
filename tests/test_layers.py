"""The import graph runs one way: shared facts, then the device runtime, then the host's shared
modules, then the four stages side by side, then the fleet, then the command line. Imports inside
functions count too: a lazy import is still a dependency."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "edgeleuk"

# Lowest first. A module may import its own layer and those below it; the stages may not import
# each other. Anything not named here is a shared fact (layer 0).
LAYERS = (
    ("runtime",),
    ("metrics", "plots", "keras_graph", "keras_file", "dataset", "split", "groups", "degrade", "stats"),
    ("train", "evaluate", "export", "validate"),
    ("messages", "fleet", "fleet_report"),
    ("cli", "__main__"),
)
STAGES = {"train", "evaluate", "export", "validate"}
DATA = {"models"}  # the packaged default model: files, no code


def _unit(module: str) -> str:
    """The first name below `edgeleuk`: a subpackage or a top-level module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "edgeleuk" else ""


def _layer(unit: str) -> int:
    return next((i + 1 for i, names in enumerate(LAYERS) if unit in names), 0)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgeleuk")}
        elif (
            isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("edgeleuk")
        ):
            found.add(node.module)
            if node.module == "edgeleuk":  # `from edgeleuk import plots` names a module
                found |= {f"edgeleuk.{a.name}" for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_layers_know_every_unit_that_is_not_a_shared_fact():
    # A new subpackage must be placed on purpose, not fall into layer 0 by accident.
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    placed = {name for names in LAYERS for name in names}
    assert packages - DATA <= placed, f"place these packages in LAYERS: {sorted(packages - DATA - placed)}"


@pytest.mark.parametrize("module,imported", [
    (m, i) for m, imports in _graph().items() for i in sorted(imports)
])
def test_no_import_runs_back_up_the_layers(module, imported):
    src, dst = _unit(module), _unit(imported)
    if src == dst or not dst:
        return
    assert _layer(dst) <= _layer(src), f"{module} (layer {_layer(src)}) imports {imported} (layer {_layer(dst)})"
    assert not (src in STAGES and dst in STAGES), f"stage {src} imports stage {dst}: move the shared part down"


def test_no_module_imports_itself_round_a_circle():
    graph = {m: {i for i in imports if i in _graph()} for m, imports in _graph().items()}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])

