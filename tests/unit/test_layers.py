"""The layering rules of docs/ARCHITECTURE.md, read from the source: no module imports another in a
circle (at import time or inside functions; imports only for type checking do not count), the engine
(``arrwdb`` outside ``arrwdb.server`` and ``arrwdb.bench``) never imports the HTTP layer, and the
modules an HTTP worker process loads never import torch or FAISS."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"arrwdb": ROOT / "arrwdb", "arrwdb.server": ROOT / "server", "arrwdb.kernels": ROOT / "kernels"}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if package == "arrwdb" and parts[:1] in (["server"], ["kernels"], ["bench"]):
                continue
            found[name] = path
    return found


MODULES = _modules()


def _imports(path: Path, module: str) -> set[str]:
    """Modules of this code base that ``path`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name in MODULES and name != module}


GRAPH = {module: _imports(path, module) for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in GRAPH[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read():
    assert "arrwdb.engine.core" in GRAPH["arrwdb.engine.api"] or "arrwdb.engine.core" in MODULES
    assert "arrwdb.runtime.scheduler" in GRAPH["arrwdb.engine.core"]
    assert "arrwdb.server.errors" in GRAPH["arrwdb.server.admission"]


def test_no_module_imports_another_in_a_circle():
    assert _cycles() == []


def test_the_engine_never_imports_the_http_layer():
    offenders = {
        module: sorted(name for name in imports if name.startswith("arrwdb.server"))
        for module, imports in GRAPH.items()
        if not module.startswith("arrwdb.server") and module != "arrwdb.cli"  # the command line is above both
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def _reach(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for other in GRAPH[todo.pop()]:
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return seen


def test_an_http_worker_loads_neither_torch_nor_faiss():
    """What ``server.worker_main`` reaches at import time or in its functions, minus the modules
    that only the engine process or the in-process app run (reached through lazy imports)."""
    engine_side = {"arrwdb.engine.core", "arrwdb.ipc.service", "arrwdb.server.supervisor"}
    reached = set()
    todo = ["arrwdb.server.worker_main"]
    while todo:
        module = todo.pop()
        if module in reached or module in engine_side:
            continue
        reached.add(module)
        todo.extend(GRAPH[module])
    heavy = {}
    for module in reached:
        text = MODULES[module].read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in ("torch", "faiss"):
                    heavy.setdefault(module, []).append(name)
    # LocalEngine's metrics reads torch only on a CUDA engine, inside the engine process.
    heavy.pop("arrwdb.engine.api", None)
    assert heavy == {}


# The layers of docs/ARCHITECTURE.md, top to bottom.  A module may import modules of its own folder and
# of the layers below its own; folders on one layer are independent of each other.
LAYERS: list[set[str]] = [
    {"cli"},
    {"server", "client"},
    {"cluster"},
    {"ipc"},
    {"engine"},
    {"library"},
    {"embed", "index"},
    {"kernels", "store"},
    {"runtime"},
    {"", "errors", "config", "records"},  # arrwdb/__init__.py and the modules every layer shares
]


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(folder: str) -> int:
    return next(i for i, folders in enumerate(LAYERS) if folder in folders)


def test_every_folder_has_a_layer():
    folders = {_folder(module) for module in MODULES}
    assert {"store", "runtime", "library", "engine", "client", "cluster", "ipc", "server"} <= folders
    assert folders - set().union(*LAYERS) == set()


def test_modules_import_only_their_folder_and_the_layers_below():
    offenders = []
    for module, imports in GRAPH.items():
        folder = _folder(module)
        for name in imports:
            other = _folder(name)
            if other != folder and _layer(other) <= _layer(folder):
                offenders.append(f"{module} -> {name}")
    assert offenders == []


def test_the_client_needs_nothing_of_the_server_or_the_engine():
    """The client ships to users' programs: it reaches the foundation (the version) and itself only."""
    reached = _reach("arrwdb.client")
    assert {_folder(module) for module in reached} <= {"client", ""}
