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
