"""Import layering: lower stages never import the stages built on them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What each low package may import from the project: the records and the plumbing only.
ALLOWED = {
    "pipeline/policies": (
        "pipeline.policies",
        "pipeline.models",
        "pipeline.log",
        "pipeline.errors",
    ),
}


def project_imports(path: Path) -> set[str]:
    """Every `pipeline.*` / `workers.*` module a file imports, at any depth in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in {"pipeline", "workers"}}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_low_package_imports_nothing_above_it(package: str) -> None:
    """A policies module importing the prompt or the runner would tie the loader to them."""
    allowed = ALLOWED[package]
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / package).glob("*.py"))
        for name in project_imports(path)
        if not name.startswith(allowed)
    }
    assert wrong == set()


def test_pipeline_never_imports_workers() -> None:
    """workers builds on pipeline; the reverse would pull Celery into the library."""
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        for name in project_imports(path)
        if name.startswith("workers")
    }
    assert wrong == set()
