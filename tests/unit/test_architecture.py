"""The layout's rules, checked by walking the source with ``ast`` (nothing is imported).

Nodes of the import graph are the packages under ``nearrec`` (``nearrec.postgres``, ``nearrec.query``, ...)
and the top-level modules (``nearrec.config``, ``nearrec.errors``, ``nearrec.filters``, ...). Every import
counts, wherever it is written (module level, inside a function, under ``TYPE_CHECKING``): a lazy import
hides a dependency from the interpreter, not from the reader.

Rules: no cycle between nodes; ``model/`` imports no I/O layer; only the entry points import ``nearrec.cli``
and ``nearrec.api``; no module over 400 lines and no function over 60.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "platform" / "nearrec"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# model/ is pure ranking math: none of these may appear in its imports.
IO_LAYERS = frozenset(
    {
        "nearrec.postgres", "nearrec.vectors", "nearrec.sync", "nearrec.query", "nearrec.api", "nearrec.cli",
        "nearrec.jobs", "nearrec.ingest", "nearrec.embedding", "nearrec.runtime",
        "sqlalchemy", "psycopg", "alembic", "qdrant_client", "qdrant_edge", "httpx", "fastapi", "uvicorn",
        "sentence_transformers",
    }
)  # fmt: skip
# Who may import the entry-point packages.
ENTRY_POINT_IMPORTERS = {
    "nearrec.cli": frozenset({"nearrec.cli", "nearrec.__main__"}),
    "nearrec.api": frozenset({"nearrec.api", "nearrec.cli"}),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. nearrec.query.service
    target: str  # the imported module, e.g. nearrec.postgres.query_repo or sqlalchemy.orm
    line: int

    @property
    def source_node(self) -> str:
        return node_of(self.module)

    @property
    def target_node(self) -> str:
        return node_of(self.target)

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def node_of(module: str) -> str:
    """``nearrec.<first component>`` for nearrec modules (the root package is ``nearrec``); the top-level
    distribution name for anything else (``sqlalchemy.orm`` -> ``sqlalchemy``)."""
    parts = module.split(".")
    if parts[0] != "nearrec":
        return parts[0]
    return ".".join(parts[:2])


def source_files(root: Path = PACKAGE_ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def imports_of(path: Path, root: Path = PACKAGE_ROOT) -> Iterator[Import]:
    """Every module ``path`` imports; ``from pkg import name`` yields ``pkg.name`` when that is a module."""
    module = module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
            for alias in node.names:
                yield Import(module, _submodule_or_package(target, alias.name, root), node.lineno)


def _submodule_or_package(package: str, name: str, root: Path) -> str:
    if package.split(".")[0] != "nearrec":
        return package
    candidate = root.parent.joinpath(*package.split("."), name)
    if candidate.with_suffix(".py").is_file() or candidate.is_dir():
        return f"{package}.{name}"
    return package


def all_imports(root: Path = PACKAGE_ROOT) -> list[Import]:
    return [imp for path in source_files(root) for imp in imports_of(path, root)]


def package_graph(imports: Iterable[Import]) -> dict[str, dict[str, list[Import]]]:
    """node -> node it imports -> the imports that make the edge (nearrec nodes only, no self edges)."""
    graph: dict[str, dict[str, list[Import]]] = defaultdict(lambda: defaultdict(list))
    for imp in imports:
        src, dst = imp.source_node, imp.target_node
        if dst.split(".")[0] == "nearrec" and src != dst:
            graph[src][dst].append(imp)
    return graph


def strongly_connected(graph: dict[str, dict[str, list[Import]]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components with more than one node (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, {})):
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

    nodes = set(graph) | {w for edges in graph.values() for w in edges}
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return found


def describe_component(component: list[str], graph: dict[str, dict[str, list[Import]]]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    for src in component:
        for dst, imps in sorted(graph[src].items()):
            if dst in members:
                lines.append(f"    {src} -> {dst}: " + "; ".join(str(i) for i in imps[:3]))
    return "\n".join(lines)


def oversized(root: Path = PACKAGE_ROOT) -> list[str]:
    """Modules over MAX_MODULE_LINES and functions (methods, nested functions) over MAX_FUNCTION_LINES."""
    offenders: list[str] = []
    for path in source_files(root):
        if "migrations" in path.parts:
            continue  # a migration is a frozen record of one schema change, not code that grows
        source = path.read_text(encoding="utf-8")
        rel = path.relative_to(root.parent)
        n_lines = len(source.splitlines())
        if n_lines > MAX_MODULE_LINES:
            offenders.append(f"{rel}: module has {n_lines} lines (limit {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    offenders.append(
                        f"{rel}:{node.lineno}: {node.name}() has {length} lines (limit {MAX_FUNCTION_LINES})"
                    )
    return offenders


def _report(title: str, offenders: list[str]) -> str:
    text = f"{title} ({len(offenders)}):\n" + "\n".join(f"  {o}" for o in offenders)
    print(text)
    return text


# --- the walker itself: it must see what is there (otherwise every rule below passes vacuously) ---------


def test_the_walker_sees_the_package_and_its_imports() -> None:
    files = source_files()
    assert len(files) > 50
    nodes = {node_of(module_name(p)) for p in files}
    assert {"nearrec.api", "nearrec.cli", "nearrec.model", "nearrec.postgres", "nearrec.config"} <= nodes
    graph = package_graph(all_imports())
    assert "nearrec.config" in graph["nearrec.runtime"]  # runtime.py: from nearrec.config import Settings
    assert "nearrec.api" in graph["nearrec.cli"]  # `nearrec serve` builds the app
    assert "nearrec.cli" in graph["nearrec.__main__"]


def test_the_rules_catch_what_they_are_meant_to(tmp_path: Path) -> None:
    root = tmp_path / "nearrec"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "__init__.py").write_text("")
    (root / "a" / "__init__.py").write_text("")
    (root / "b" / "__init__.py").write_text("")
    (root / "config.py").write_text("def f() -> None:\n" + "    x = 1\n" * 60)
    (root / "a" / "x.py").write_text("from nearrec.b import y\nfrom . import z\n")
    (root / "a" / "z.py").write_text("import sqlalchemy.orm\n")
    (root / "b" / "y.py").write_text(
        "def g() -> None:\n    from nearrec import config\n    from ..a import x\n"
    )
    imports = all_imports(root)
    assert {str(i) for i in imports} == {
        "nearrec.a.x:1 imports nearrec.b.y",
        "nearrec.a.x:2 imports nearrec.a.z",
        "nearrec.a.z:1 imports sqlalchemy.orm",
        "nearrec.b.y:2 imports nearrec.config",
        "nearrec.b.y:3 imports nearrec.a.x",
    }
    graph = package_graph(imports)
    assert strongly_connected(graph) == [["nearrec.a", "nearrec.b"]]
    assert oversized(root) == ["nearrec/config.py:1: f() has 61 lines (limit 60)"]


# --- the rules ----------------------------------------------------------------------------------------------


def test_no_import_cycle_between_packages() -> None:
    graph = package_graph(all_imports())
    cycles = [describe_component(c, graph) for c in strongly_connected(graph)]
    assert not cycles, _report("import cycles between packages", cycles)


def test_model_imports_no_io_layer() -> None:
    offenders = [
        str(imp)
        for imp in all_imports()
        if imp.source_node == "nearrec.model"
        and (imp.target_node in IO_LAYERS or any(imp.target.startswith(f"{io}.") for io in IO_LAYERS))
    ]
    assert not offenders, _report("model/ imports an I/O layer", offenders)


def test_only_entry_points_import_cli_and_api() -> None:
    offenders = [
        str(imp)
        for imp in all_imports()
        if imp.target_node in ENTRY_POINT_IMPORTERS
        and imp.source_node not in ENTRY_POINT_IMPORTERS[imp.target_node]
    ]
    assert not offenders, _report("imports of nearrec.cli / nearrec.api from elsewhere", offenders)


def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    offenders = oversized()
    assert not offenders, _report("oversized modules and functions", offenders)
