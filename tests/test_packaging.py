"""What the code imports and what the image runs is what pyproject.toml declares.

An import that only works because some other package happens to pull its distribution in
(`httpx2` under `openai`) breaks the day that package changes; an extra named in the
Dockerfile but missing from pyproject.toml builds an image without Flower. Both were seen.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
OWN = {"pipeline", "workers", "policies", "tests", "benchmarks", "scripts"}
DEPLOY = ROOT / "deploy"

# Declared runtime dependencies that no module imports by name, each with why it is declared.
USED_WITHOUT_IMPORT = {
    "celery": "imported as celery; listed with the [redis] extra, which brings its transport",
    "pydantic-settings": "imported as pydantic_settings",
    "markdown-it-py": "imported as markdown_it",
    "pyyaml": "imported as yaml",
    "prometheus-client": "imported as prometheus_client",
    "argon2-cffi": "imported as argon2",
    "python-multipart": "starlette's form parser imports it for the review app's forms",
    "itsdangerous": "starlette's SessionMiddleware signs the review app's cookie with it",
    "scikit-learn": "imported as sklearn",
}


@cache
def project() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        data: dict[str, object] = tomllib.load(file)["project"]
    return data


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def runtime() -> set[str]:
    return names(project()["dependencies"])  # type: ignore[arg-type]


def extra(name: str) -> set[str]:
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    found: set[str] = set()
    for requirement in map(Requirement, extras[name]):
        if canonicalize_name(requirement.name) == "quoteguard":
            for inner in requirement.extras:  # dev = [..., "quoteguard[ops]"]
                found |= extra(inner)
        else:
            found.add(canonicalize_name(requirement.name))
    return found


def imported_distributions(folder: str) -> dict[str, set[str]]:
    """Each distribution the files under `folder` import, with the files that import it."""
    modules = packages_distributions()
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        if "fixtures" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in OWN:
                    continue
                if (path.parent / f"{top}.py").exists():  # a script's sibling module
                    continue
                # Not installed (an optional extra): its import name is its distribution's.
                for dist in modules.get(top, [top]):
                    found.setdefault(canonicalize_name(dist), set()).add(
                        str(path.relative_to(ROOT))
                    )
    return found


def undeclared(folder: str, declared: set[str]) -> dict[str, list[str]]:
    return {
        dist: sorted(files)
        for dist, files in imported_distributions(folder).items()
        if dist not in declared
    }


@pytest.mark.parametrize("folder", ["pipeline", "workers"])
def test_shipped_code_imports_only_runtime_dependencies(folder: str) -> None:
    assert undeclared(folder, runtime()) == {}


def test_tests_import_only_declared_dependencies() -> None:
    assert undeclared("tests", runtime() | extra("dev")) == {}


@pytest.mark.parametrize("folder", ["benchmarks", "scripts"])
def test_tools_import_only_declared_dependencies(folder: str) -> None:
    if not (ROOT / folder).is_dir():
        pytest.skip(f"no {folder}/")
    assert undeclared(folder, runtime() | extra("dev") | extra("bench")) == {}


def test_every_runtime_dependency_is_used() -> None:
    """A dependency nobody imports is weight in every install, or a rename we missed."""
    imported = set(imported_distributions("pipeline")) | set(imported_distributions("workers"))
    unused = runtime() - imported - {canonicalize_name(n) for n in USED_WITHOUT_IMPORT}
    assert unused == set()


def test_detector_sees_an_undeclared_import() -> None:
    """The check itself: a file importing a package that is not declared is reported."""
    found = imported_distributions("pipeline")
    assert "openai" in found  # a known import is attributed to its distribution
    assert "pipeline/llm.py" in found["httpx2"]
    assert undeclared("pipeline", runtime() - {"httpx2"}) == {"httpx2": ["pipeline/llm.py"]}


# ----------------------------------------------------------------------------- the image


def dockerfile_extras() -> set[str]:
    """Extras that `pip install` in deploy/Dockerfile asks for, e.g. `.[ops]`."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    installs = [line for line in text.splitlines() if re.search(r"\bpip install\b", line)]
    assert installs, "the Dockerfile installs nothing"
    found: set[str] = set()
    for line in installs:
        for group in re.findall(r"\.\[([^\]]*)\]", line):
            found |= {part.strip() for part in group.split(",") if part.strip()}
    return found


def deploy_commands() -> list[list[str]]:
    """The command of every service in compose and of every container in the manifests."""
    commands: list[list[str]] = []
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))
    commands += [s["command"] for s in compose["services"].values() if "command" in s]
    for manifest in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
            spec = ((document or {}).get("spec") or {}).get("template", {}).get("spec", {})
            for container in spec.get("containers", []):
                if "command" in container:
                    commands.append(container["command"])
    return commands


def test_dockerfile_extras_exist() -> None:
    extras: dict[str, list[str]] = project()["optional-dependencies"]  # type: ignore[assignment]
    assert dockerfile_extras() <= set(extras)


def test_image_has_what_compose_and_kubernetes_run() -> None:
    """Flower (and a gevent pool, if one is asked for) must be installed in the image."""
    installed = runtime().union(*(extra(name) for name in dockerfile_extras()))
    needs: set[str] = set()
    for command in deploy_commands():
        words = [str(word) for word in command]
        if "flower" in words:
            needs.add("flower")
        if "gevent" in words:
            needs.add("gevent")
        if words[0] == "quoteguard" or words[:2] == ["celery", "-A"]:
            needs.add("celery")
    assert "flower" in needs  # both compose and Kubernetes run Flower today
    assert needs - installed == set()


def test_dev_installs_what_the_image_has() -> None:
    """Tests run Flower and gevent, so the developer install has the image's extras."""
    for name in dockerfile_extras():
        assert extra(name) <= extra("dev"), name
