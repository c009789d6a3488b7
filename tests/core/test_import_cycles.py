"""The import graphs of the plugin and of training/: no cycles, core/ free of the faces, QGIS, Qt
and torch, core's rooms importing only from the floors below, and the plugin free of training/.

Read from the source with ``ast`` (nothing is imported), every import counted: those inside
functions too, which is where a cycle hides from the interpreter until the function runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rs_ghost_qgis"
TRAINING = PACKAGE.parent / "training"
NAME = PACKAGE.name
# What core/ may not import: the faces (packages of this one), QGIS, Qt and torch.
FACES = ("cli", "qgis_io", "processing", "ui")
FORBIDDEN = ("qgis", "PyQt5", "PyQt6", "torch")
# The rooms of core/ by floor, lowest first; the modules at the top of core/ are the ground floor
# (0). A module imports from its own room and the floors below, never from a floor above nor
# from another room of its own floor (docs/ENGINE.md draws them).
FLOORS = [("model", "sources"), ("radiometry",), ("classify",), ("many", "adapt")]


def module_name(path: Path, root: Path) -> str:
    """'pkg.core.grid' for root/core/grid.py, 'pkg.core' for root/core/__init__.py."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, module: str) -> set[str]:
    """Every module named by an import statement of ``path`` (at any depth), relative ones resolved.

    ``from X import Y`` gives X.Y as well as X: Y may be a submodule (``from . import crs``);
    a name that is no module is dropped by the caller, which knows the modules.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, package)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _resolve(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from ... import``; level 1 is ``package`` itself."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, edges to its own parent packages left out.

    A module's parents are initialised before it runs, whatever it imports from them
    (``from . import LOG_TAG`` in plugin.py, whose package imports the plugin inside
    ``classFactory``): such an edge closes no cycle that could leave a name unbound.
    """
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    graph = {}
    for module, path in files.items():
        parents = {module.rsplit(".", depth)[0] for depth in range(1, module.count(".") + 1)}
        names = imported_names(path, module)
        graph[module] = {name for name in names if name in files and name != module and name not in parents}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search, colouring nodes)."""
    state: dict[str, str] = {}  # "open" while on the search path, "done" when fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


@pytest.mark.parametrize("root", [PACKAGE, TRAINING], ids=lambda root: root.name)
def test_the_package_has_no_import_cycle(root):
    cycle = find_cycle(import_graph(root))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_plugin_never_imports_training():
    """The plugin runs in QGIS without torch: training/ may use the plugin's core, never the reverse."""
    bad = [
        f"{module_name(path, PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in imported_names(path, module_name(path, PACKAGE))
        if name.split(".")[0] == TRAINING.name
    ]
    assert not bad, "\n".join(bad)


def forbidden_imports(path: Path, module: str) -> list[str]:
    """What a core module ``module`` (at ``path``) imports that core may not: a face, QGIS, Qt or torch."""
    faces = tuple(f"{NAME}.{face}" for face in FACES)
    found = {
        name
        for name in imported_names(path, module)
        if name.split(".")[0] in FORBIDDEN or name in faces or name.startswith(tuple(f"{face}." for face in faces))
    }
    return sorted(name for name in found if name.rpartition(".")[0] not in found)  # X, not X and X.Y too


def test_core_imports_no_face_nor_qgis_qt_or_torch():
    bad = [
        f"{module_name(path, PACKAGE)} imports {name}"
        for path in sorted((PACKAGE / "core").rglob("*.py"))
        for name in forbidden_imports(path, module_name(path, PACKAGE))
    ]
    assert not bad, "\n".join(bad)


def room_and_floor(module: str) -> tuple[str, int]:
    """('classify', 3) for pkg.core.classify.grid; ('errors', 0) for pkg.core.errors, on the ground floor."""
    room = module.split(".")[2] if module.count(".") >= 2 else ""
    floor = next((number for number, rooms in enumerate(FLOORS, start=1) if room in rooms), 0)
    return room, floor


def test_core_rooms_import_only_from_the_floors_below():
    core = f"{NAME}.core."
    bad = []
    for module, targets in import_graph(PACKAGE).items():
        if not module.startswith(core):
            continue
        room, floor = room_and_floor(module)
        for target in sorted(name for name in targets if name.startswith(core)):
            other, other_floor = room_and_floor(target)
            if other_floor > floor or (other_floor == floor > 0 and other != room):
                bad.append(f"{module} (floor {floor}) imports {target} (floor {other_floor})")
    assert not bad, "\n".join(bad)


def test_the_checks_see_a_cycle_through_a_function_local_import(tmp_path):
    """The search itself: a cycle closed by an import inside a function, and a relative import two levels up."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "c.py"):
        (root / name).write_text("")
    (root / "a.py").write_text("from .sub import b\n")
    (root / "sub" / "b.py").write_text("def f():\n    from ..c import x\n")
    assert find_cycle(import_graph(root)) is None
    (root / "c.py").write_text("import os\n\n\ndef g():\n    from . import a\n")
    assert find_cycle(import_graph(root)) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]


@pytest.mark.parametrize(
    "line", ["from ..qgis_io import layers", "from ..cli.main import main", "import torch", "from qgis.core import X"]
)
def test_a_forbidden_import_in_core_is_seen(tmp_path, line):
    path = tmp_path / "grid.py"
    path.write_text(f"import math\n\n\ndef probe():\n    {line}\n")
    assert forbidden_imports(path, f"{NAME}.core.grid")
