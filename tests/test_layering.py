"""Import structure. liquidcore: no cycles, never the service, native kernels as a leaf. The
service: the layers api -> engine -> store, the demo and the client outside the server.

The graph is read from the sources with ``ast`` and counts every import: at module level, inside
functions (lazy imports) and under ``TYPE_CHECKING``, since each is a dependency of one module
on another even where Python tolerates the cycle at run time. Importing ``a.b.c`` also runs the
packages ``a.b`` and ``a``, so those are edges too, except for the importer's own packages
(already running). A second test imports every module first in a process where no other
liquidcore module is loaded yet, which a cycle would break.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOT = "liquidcore"


def module_names(root: str = ROOT) -> dict[str, Path]:
    names = {}
    for path in sorted((REPO / root).rglob("*.py")):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = module_names()


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imported(path: Path) -> set[str]:
    """Every module name an ``import`` in ``path`` names (absolute imports only)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            assert node.module is not None
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def graph() -> dict[str, set[str]]:
    """``{module: liquidcore modules whose import it runs}``."""
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        own = set(_ancestors(name)) | ({name} if path.name == "__init__.py" else set())
        targets = set()
        for target in imported(path):
            if target not in MODULES:
                continue  # a name imported from a module, or not ours
            targets.update(t for t in (*_ancestors(target), target) if t in MODULES)
        edges[name] = targets - own - {name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_lazy_and_type_only_imports() -> None:
    edges = graph()
    assert "liquidcore.cells.ltc" in edges["liquidcore.cells.registry"]
    assert "liquidcore.cells.registry" in edges["liquidcore.model"]  # imported in a function
    assert "liquidcore.native.ltc" in edges["liquidcore.functional.ltc_fused"]
    assert "liquidcore.native" in edges["liquidcore.functional.ltc_fused"]  # the package runs
    assert "liquidcore.native" not in edges["liquidcore.native.runtime"]  # its own package
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_liquidcore_has_no_import_cycle() -> None:
    assert cycles(graph()) == []


def test_liquidcore_never_imports_the_service() -> None:
    offenders = {
        name: sorted(t for t in imported(path) if t == "service" or t.startswith("service."))
        for name, path in MODULES.items()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("layer", "may_not_import"),
    [
        ("liquidcore.native", ("liquidcore.functional", "liquidcore.cells", "liquidcore.model")),
        ("liquidcore.functional", ("liquidcore.cells", "liquidcore.model", "liquidcore.train")),
        ("liquidcore.wirings", ("liquidcore.compat", "liquidcore.cells")),
    ],
)
def test_lower_layers_do_not_import_higher_ones(
    layer: str, may_not_import: tuple[str, ...]
) -> None:
    edges = graph()
    wrong = {
        name: sorted(t for t in targets if t.startswith(may_not_import))
        for name, targets in edges.items()
        if name == layer or name.startswith(layer + ".")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_no_cell_module_imports_the_registry() -> None:
    edges = graph()
    cells = [
        n for n in edges if n.startswith("liquidcore.cells.") and n != "liquidcore.cells.registry"
    ]
    assert [n for n in cells if "liquidcore.cells.registry" in edges[n]] == []


ISOLATED_IMPORTS = """
import sys, importlib
import torch  # loaded once; every liquidcore module is then imported with no other loaded

failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "liquidcore" or m.startswith("liquidcore.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ImportError as err:
        failed.append(f"{name}: {err!r}")
print("\\n".join(failed))
"""


def test_every_module_imports_first_in_a_fresh_process() -> None:
    names = [n for n in MODULES if not n.endswith("__main__")]
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORTS, *names],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


# -- the service -----------------------------------------------------------------------------
SERVICE = module_names("service")
# What the server process runs: everything but the CLI's lazily loaded demo and the client.
SERVER = {
    n: p
    for n, p in SERVICE.items()
    if not n.startswith(("service.demo", "service.client"))
    and n not in ("service.cli",)
    and not n.endswith("__main__")
}


def _service_imports(name: str) -> set[str]:
    """The service modules (and their packages) an import in ``name`` runs, lazy ones included."""
    out: set[str] = set()
    for target in imported(SERVICE[name]):
        out.update(t for t in (*_ancestors(target), target) if t in SERVICE)
    return out - {name}


def test_the_server_never_imports_the_demo() -> None:
    wrong = {
        n: sorted(t for t in _service_imports(n) if t.startswith("service.demo")) for n in SERVER
    }
    assert {k: v for k, v in wrong.items() if v} == {}


@pytest.mark.parametrize(
    ("layer", "may_not_import"),
    [
        ("service.store", ("service.engine", "service.api", "service.live", "service.app")),
        ("service.engine", ("service.api", "service.live.session", "service.app")),
        ("service.live.bus", ("service.api", "service.engine", "service.app")),
        ("service.client", ("service.api", "service.engine", "service.store", "service.live")),
    ],
)
def test_service_layers(layer: str, may_not_import: tuple[str, ...]) -> None:
    wrong = {
        n: sorted(t for t in _service_imports(n) if t.startswith(may_not_import))
        for n in SERVICE
        if n == layer or n.startswith(layer + ".")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_serving_loads_no_demo_module() -> None:
    code = (
        "import sys, service.app, service.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('service.demo')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.strip() == "[]"
