"""deploy/ stays consistent with the code: files parse, settings named there exist.

Docker and Kubernetes are not available in CI, so the manifests are checked as data:
they parse as YAML, every QUOTEGUARD_* variable they set is a real setting, and the pieces
refer to each other by the right names (queue, deployment, Redis with AOF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Settings
from workers.settings import WorkerSettings, check_visibility_timeout

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"

KNOWN = {
    f"QUOTEGUARD_{name.upper()}" for name in (*Settings.model_fields, *WorkerSettings.model_fields)
} | {"QUOTEGUARD_CONFIG"}


def env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.lstrip("# ").split("=", 1)
        for line in path.read_text().splitlines()
        if line.lstrip("# ").startswith("QUOTEGUARD_")
    )
    return dict(pairs)


class TestEnvFile:
    def test_every_variable_is_a_setting(self) -> None:
        """A misspelt variable would be ignored silently; every one must name a setting."""
        names = set(env_file(DEPLOY / "quoteguard.env"))
        assert names
        assert names <= KNOWN, names - KNOWN

    def test_settings_load(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The example values are valid and pass the visibility-timeout start-up check."""
        for name, value in env_file(DEPLOY / "quoteguard.env").items():
            if not name.startswith("QUOTEGUARD_WEBHOOK"):
                monkeypatch.setenv(name, value)
        check_visibility_timeout(WorkerSettings(), Settings())


def load_all(path: Path) -> list[dict[str, Any]]:
    # Only the manifest tests need PyYAML; the env-file tests above run without it.
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to parse the manifests")
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def k8s_docs() -> dict[tuple[str, str], dict[str, Any]]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            docs[doc["kind"], doc["metadata"]["name"]] = doc
    return docs


class TestCompose:
    def test_services(self) -> None:
        """Redis with AOF, the simulated model, workers and Flower, wired by name."""
        [compose] = load_all(DEPLOY / "docker-compose.yml")
        services = compose["services"]
        assert {"redis", "sim", "worker", "flower"} <= set(services)
        redis_cmd = services["redis"]["command"]
        assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
        assert services["worker"]["command"][:2] == ["quoteguard", "worker"]
        assert services["flower"]["command"][:4] == ["celery", "-A", "workers.app", "flower"]
        assert services["worker"]["env_file"] == "quoteguard.env"


class TestKubernetes:
    def test_every_document_is_a_named_object(self) -> None:
        """Each manifest document has apiVersion, kind and a name; kustomize lists them all."""
        listed = set(load_all(K8S / "kustomization.yaml")[0]["resources"])
        assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        for path in K8S.glob("*.yaml"):
            for doc in load_all(path):
                assert doc["apiVersion"]
                assert doc["kind"]
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"]

    def test_config_names_real_settings(self) -> None:
        """The ConfigMap only sets settings that exist, with values that pass start-up."""
        config = k8s_docs()["ConfigMap", "quoteguard-config"]["data"]
        assert set(config) <= KNOWN, set(config) - KNOWN
        timeout = int(config["QUOTEGUARD_VISIBILITY_TIMEOUT_S"])
        check_visibility_timeout(WorkerSettings(visibility_timeout_s=timeout), Settings())

    def test_autoscaling_watches_the_worker_queue(self) -> None:
        """KEDA scales the worker Deployment on the Redis list that is the Celery queue."""
        docs = k8s_docs()
        scaled = docs["ScaledObject", "quoteguard-worker"]
        assert ("Deployment", scaled["spec"]["scaleTargetRef"]["name"]) in docs
        [trigger] = scaled["spec"]["triggers"]
        queue = docs["ConfigMap", "quoteguard-config"]["data"]["QUOTEGUARD_NAMESPACE"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == queue

    def test_worker_and_redis(self) -> None:
        """Workers get time for a warm shutdown; Redis keeps an AOF on a volume."""
        docs = k8s_docs()
        worker = docs["Deployment", "quoteguard-worker"]["spec"]["template"]["spec"]
        assert worker["terminationGracePeriodSeconds"] >= 60
        assert worker["containers"][0]["command"][:2] == ["quoteguard", "worker"]
        redis_args = docs["StatefulSet", "redis"]["spec"]["template"]["spec"]["containers"][0]
        assert redis_args["args"][redis_args["args"].index("--appendonly") + 1] == "yes"
