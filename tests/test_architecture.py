"""The layering of DESIGN.md holds: jobs -> compaction -> backup_lambda, nothing upward,
and the Lambda package imports neither pyarrow nor duckdb."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "backup_lambda": {"compaction", "jobs", "pyarrow", "duckdb", "moto"},
    "compaction": {"jobs", "duckdb", "moto"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_or_heavy_imports(package: str) -> None:
    # GIVEN every module of the package WHEN its imports are read THEN none is forbidden
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN[package])
        for path in (ROOT / package).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_lambda_handler_imports_without_analytics_packages() -> None:
    # GIVEN a fresh interpreter WHEN the handler module is imported THEN pyarrow and duckdb
    # are not loaded (the Lambda zip ships without them)
    code = (
        "import sys, backup_lambda.handler as h; "
        "bad = [m for m in ('pyarrow', 'duckdb', 'compaction', 'jobs') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"BACKUP_BUCKET": "b", "PATH": "", "AWS_DEFAULT_REGION": "us-east-1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


PACKAGES = ("backup_lambda", "compaction", "jobs", "bench")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports. Importing `a.b.c` runs the `__init__` of
    `a` and `a.b` first, so those count as imported too (as Python executes them)."""
    modules = {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            found: list[str] = []
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in found:
                parts = target.split(".")
                targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & modules.keys()
        targets.discard(name)
        # a package's own __init__ is not an import of its submodule's making
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # GIVEN every project module WHEN the imports between them are followed THEN no module
    # reaches itself again
    assert cycles(import_graph()) == []


def test_cycle_finder_sees_a_cycle() -> None:
    # GIVEN a graph with a two-module cycle WHEN cycles are looked for THEN it is found
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_jobs_packages_do_not_import_the_command_table() -> None:
    # GIVEN the command packages WHEN their imports are read THEN none imports jobs.main
    # (the command table sits on top; the demo gets the entry point handed in)
    graph = import_graph()
    offenders = sorted(m for m, targets in graph.items() if "jobs.main" in targets)
    assert offenders == ["jobs.__main__"]
