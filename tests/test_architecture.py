"""The layout's import directions (docs/architecture.md), checked on the source.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

#: Each part of the code and the parts it may import (besides itself). The order is
#: that of the data path; a part never imports one that comes after it.
ALLOWED: dict[str, set[str]] = {
    # the node
    "dicom_node": set(),  # the package itself: its version
    "dicom_node.dicom": set(),
    "dicom_node.core": set(),
    "dicom_node.db": {"dicom_node.core", "dicom_node.dicom"},
    "dicom_node.ingest": {"dicom_node.core", "dicom_node.dicom", "dicom_node.db"},
    "dicom_node.network": {
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.db",
        "dicom_node.ingest",
    },
    "dicom_node.jobs": {"dicom_node.core", "dicom_node.dicom", "dicom_node.db"},
    "dicom_node.results": {"dicom_node", "dicom_node.core", "dicom_node.dicom"},
    "dicom_node.tracking": {
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.db",
        "dicom_node.results",
        "dicom_node.network",
    },
    "dicom_node.delivery": {
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.db",
        "dicom_node.network",
        "dicom_node.tracking",
    },
    "dicom_node.web": {
        "dicom_node",
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.db",
        "dicom_node.jobs",
        "dicom_node.results",
        "dicom_node.tracking",
        "dicom_node.delivery",
    },
    "dicom_node.runtime": {
        "dicom_node",
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.db",
        "dicom_node.ingest",
        "dicom_node.network",
        "dicom_node.jobs",
        "dicom_node.tracking",
        "dicom_node.delivery",
        "dicom_node.web",
    },
    # the networks: inference needs nothing of the node
    "models": set(),
    "models.phantoms": {"dicom_node", "dicom_node.dicom"},
    "models.datasets": {"dicom_node", "dicom_node.dicom", "models", "models.phantoms"},
    "models.training": {"dicom_node.dicom", "models", "models.datasets", "models.phantoms"},
    # the analysis
    "workers.pipeline": {"dicom_node.core", "dicom_node.dicom", "models"},
    "workers": {
        "dicom_node",
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.db",
        "dicom_node.ingest",
        "dicom_node.network",
        "dicom_node.jobs",
        "dicom_node.results",
        "dicom_node.tracking",
        "dicom_node.delivery",
        "models",
        "workers.pipeline",
    },
    "workers.tools": {
        "dicom_node.core",
        "dicom_node.dicom",
        "dicom_node.ingest",
        "dicom_node.results",
        "models",
        "workers",
        "workers.pipeline",
    },
    "workers.evaluation": {
        "dicom_node.core",
        "dicom_node.dicom",
        "models",
        "models.datasets",
        "models.phantoms",
        "models.training",
        "workers.pipeline",
    },
}
#: The command line sits on top of everything.
TOP = "dicom_node.cli"
PACKAGES = ("dicom_node", "workers", "models")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> tuple[set[str], set[str]]:
    """The project's modules ``module`` imports, and the other top-level packages."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    own: set[str] = set()
    external: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                target = _resolve(name)
                if target is not None and target != module:
                    own.add(target)
            elif name:
                external.add(name.split(".")[0])
    return own, external


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def part_of(module: str) -> str:
    if module == TOP or module.startswith(TOP + ".") or module == "dicom_node.__main__":
        return TOP
    parts = [p for p in ALLOWED if module == p or module.startswith(p + ".")]
    assert parts, f"{module} belongs to no part of the layout: add it to docs/architecture.md"
    return max(parts, key=len)


def test_every_import_goes_an_allowed_direction() -> None:
    wrong = []
    for module, (imports, _) in sorted(GRAPH.items()):
        source = part_of(module)
        if source == TOP:
            continue
        for target in sorted(imports):
            to = part_of(target)
            if to != source and to not in ALLOWED[source]:
                wrong.append(f"{module} -> {target} ({source} may not import {to})")
    assert wrong == []


def test_no_import_cycles() -> None:
    """Between modules (function-level imports included) and between the parts."""
    edges = {module: imports for module, (imports, _) in GRAPH.items()}
    assert _cycles(edges) == []
    parts: dict[str, set[str]] = {}
    for module, imports in edges.items():
        parts.setdefault(part_of(module), set()).update(
            part_of(t) for t in imports if part_of(t) != part_of(module)
        )
    assert _cycles(parts) == []


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_only_the_network_layer_speaks_pynetdicom() -> None:
    users = sorted(m for m, (_, external) in GRAPH.items() if "pynetdicom" in external)
    assert users and all(part_of(m) == "dicom_node.network" for m in users), users


def test_the_node_process_never_imports_torch_or_the_pipeline() -> None:
    """What ``serve`` and the listener processes load: no torch, no analysis."""
    code = (
        "import sys\n"
        "import dicom_node.cli.main, dicom_node.runtime.node, dicom_node.network.listener\n"
        "import dicom_node.network.pool, dicom_node.web.app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'monai')\n"
        "             or m.startswith(('workers.pipeline', 'models')))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_the_checks_see_the_whole_code() -> None:
    """The graph holds every module, and catches a function-level import."""
    assert {"dicom_node.network.listener", "workers.tasks", "models.infer"} <= set(GRAPH)
    assert "dicom_node.network.query" in GRAPH["dicom_node.tracking.priors"][0]
    lazy = [m for m, path in MODULES.items() if "\n    from " in path.read_text()]
    assert lazy, "no function-level import left to check"
    assert all(m in GRAPH for m in lazy)
