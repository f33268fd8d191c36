"""Fixtures for the worker tests: a Redis database of their own, namespaces, worker processes.

Registered by `pytest_plugins = ["tests.fixtures_workers"]` in each worker test module (the
shared tests/conftest.py belongs to the simulated model). Every test run claims one of the
databases 9-15 with a lock key, so two runs on one machine (two engineers, or CI beside a
developer) never flush each other's data; each test then works in a namespace of its own.

Test modules also import the helpers below, which imports this module before pytest sees it
as a plugin; PYTEST_DONT_REWRITE tells pytest that is intended (no assertion rewriting here).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from pipeline.models import ContentItem, Decision
from workers.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
REDIS_HOST = os.environ.get("QUOTEGUARD_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("QUOTEGUARD_TEST_REDIS_PORT", "6379"))
TEST_DBS = range(9, 16)
LOCK_KEY = "quoteguard-test-run-lock"
LOCK_TTL_S = 900


@pytest.fixture(scope="session")
def redis_db() -> Iterator[int]:
    """A database number this test run holds alone, flushed before use."""
    token = uuid.uuid4().hex
    for db in TEST_DBS:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        try:
            if client.set(LOCK_KEY, token, nx=True, ex=LOCK_TTL_S):
                break
        except redis.ConnectionError:
            pytest.fail(f"worker tests need Redis at {REDIS_HOST}:{REDIS_PORT}")
        client.close()
    else:
        pytest.fail(f"every test database {TEST_DBS} is locked by another test run")
    for key in client.scan_iter(count=1000):
        if key != LOCK_KEY.encode():
            client.delete(key)
    yield db
    if client.get(LOCK_KEY) == token.encode():
        client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def redis_url(redis_db: int) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def namespace(redis_client: redis.Redis) -> Iterator[str]:
    """A key prefix (and queue name) no other test uses; its keys are removed afterwards."""
    ns = f"qgt-{uuid.uuid4().hex[:10]}"
    yield ns
    for key in redis_client.scan_iter(match=f"{ns}*", count=1000):
        redis_client.delete(key)


@pytest.fixture
def settings(redis_url: str, namespace: str) -> WorkerSettings:
    return WorkerSettings(redis_url=redis_url, namespace=namespace, metrics_port=None)


def make_decision(
    item_id: str = "item-1",
    *,
    outcome: str = "human_review",
    priority: int = 50,
    policy_version: str = "pv1",
    model: str = "sim-model",
) -> Decision:
    return Decision.model_validate(
        {
            "item_id": item_id,
            "outcome": outcome,
            "review_priority": priority,
            "model": model,
            "policy_version": policy_version,
        }
    )


def make_item(item_id: str = "item-1", text: str = "some content") -> ContentItem:
    return ContentItem(id=item_id, text=text)


# ----------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Processes:
    """Child processes a test started; every one is stopped (by its pid) at teardown."""

    logs: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log_file = (self.logs / f"{name}-{len(self.started)}.log").open("wb")
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(logs=tmp_path)
    yield procs
    procs.stop_all()


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a worker or simulator child: this repo importable, our settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTEGUARD_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


PYTHON = sys.executable
