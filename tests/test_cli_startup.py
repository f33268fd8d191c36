"""CLI start-up: help and light commands load no heavy library (see pipeline.cli).

Speed itself is shown by benchmarks/bench_startup.py; these tests hold the cause of a slow
start, a heavy import at the top of a command module, to zero.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: What `import typer, rich` does not load and help must not either. (pydantic is not in the
#: list: typer itself imports it to coerce a command's parameters, help included.)
HEAVY = (
    "openai", "instructor", "numpy", "scipy", "sklearn", "matplotlib", "celery",
    "kombu", "redis", "starlette", "uvicorn", "jinja2", "httpx", "httpx2", "rapidfuzz",
    "structlog", "markdown_it", "pipeline.models", "pipeline.config", "pipeline.runner",
)  # fmt: skip

PROBE = """
import json, sys
sys.argv = ["quoteguard", *json.loads(sys.argv[1])]
from pipeline.cli import app
try:
    app()
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(sys.modules)))
"""


def loaded_modules(argv: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES="))
    return set(json.loads(line.removeprefix("MODULES=")))


class TestHelpStaysLight:
    @pytest.mark.parametrize(
        "argv",
        [
            ["--help"],
            ["moderate", "--help"],
            ["calibrate", "--help"],
            ["compare", "--help"],
            ["sim", "serve", "--help"],
            ["submit", "--help"],
            ["review", "resolve", "--help"],
            ["review", "serve", "--help"],
            ["policy", "lint", "--help"],
        ],
    )
    def test_help_imports_no_heavy_module(self, argv: list[str]) -> None:
        """Help for any command loads none of the pipeline's heavy libraries."""
        modules = loaded_modules(argv)
        assert "typer" in modules
        heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m in HEAVY)
        assert heavy == []

    def test_every_command_is_listed(self) -> None:
        """Commands registered in modules and by the workers plugin all show in help."""
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "--help"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        for command in ("moderate", "demo", "eval", "calibrate", "compare", "sim", "policy",
                        "worker", "submit", "results", "queue", "review"):  # fmt: skip
            assert f"  {command} " in done.stdout
