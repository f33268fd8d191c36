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
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from pipeline.models import ContentItem, Decision
from pipeline.sim.config import SimConfig
from pipeline.sim.server import SimServer
from workers.results import Results
from workers.review_queue import ReviewQueue
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
    return WorkerSettings(redis_url=redis_url, namespace=namespace, metrics_port=0)


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
        with (self.logs / f"{name}-{len(self.started)}.log").open("wb") as log_file:
            # The child keeps its own copy of the descriptor; ours can close at once.
            proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
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


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """A redis-server of this test's own (AOF on), on a free port: safe to restart."""
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(tmp_path)]

    def start() -> subprocess.Popen[bytes]:
        with (tmp_path / f"redis-{len(procs)}.log").open("wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        client = redis.Redis(port=port)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(answers, 10, "redis-server to answer")
        client.close()
        return proc

    start.port = port  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)


# ----------------------------------------------------------------------------- webhooks


class Receiver:
    """A real HTTP server that answers with scripted statuses and records what it got."""

    def __init__(self) -> None:
        self.statuses: list[tuple[int, dict[str, str]]] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received.append((dict(self.headers.items()), body))
                    status, headers = receiver.statuses.pop(0) if receiver.statuses else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- a fleet

#: Settings that keep the longest task short enough for a 10 s visibility timeout, so a
#: killed worker's items come back within the test's time (the start-up check enforces it).
FAST_WORKER_ENV = {
    "QUOTEGUARD_MODEL": "sim-calibrated",
    "QUOTEGUARD_LOG_LEVEL": "warning",
    "QUOTEGUARD_METRICS_PORT": "0",
    "QUOTEGUARD_TIMEOUT_S": "2",
    "QUOTEGUARD_MAX_TRANSPORT_RETRIES": "0",
    "QUOTEGUARD_MAX_REASKS": "1",
    "QUOTEGUARD_VISIBILITY_TIMEOUT_S": "10",
    "QUOTEGUARD_RESTORE_INTERVAL_S": "1",
    "QUOTEGUARD_RETRY_BACKOFF_S": "0.05",
    "QUOTEGUARD_RETRY_BACKOFF_MAX_S": "0.5",
    "QUOTEGUARD_RATE_WAIT_MAX_S": "2",
    "QUOTEGUARD_MAX_RETRIES": "4",
}


@dataclass
class Fleet:
    """Worker processes of one test, all on one Redis db, namespace and simulated model."""

    processes: Processes
    redis_url: str
    namespace: str
    sim: SimServer
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        client = redis.Redis.from_url(self.redis_url, decode_responses=True)
        self.results = Results(client, self.namespace)
        self.review = ReviewQueue(client, self.namespace)
        self.redis = client
        # Producers need not import the workers package: send the task by name, as the
        # documented signature says.
        self.producer = Celery("test-producer", broker=self.redis_url)
        self.producer.conf.update(task_serializer="json", accept_content=["json"])

    def start_worker(
        self,
        name: str = "w",
        *,
        pool: str = "threads",
        concurrency: int = 8,
        via_cli: bool = False,
        **env: str,
    ) -> subprocess.Popen[bytes]:
        """`celery -A workers.app worker ...`, or `quoteguard worker` (via_cli) as users run it."""
        node = f"{name}-{uuid.uuid4().hex[:6]}@%h"
        if via_cli:
            argv = [PYTHON, "-m", "workers.cli", "worker", "-P", pool, "-c", str(concurrency)]
            argv += ["-l", "warning", "-n", node]
        else:
            argv = [PYTHON, "-m", "celery", "-A", "workers.app", "worker", "-P", pool]
            argv += ["-c", str(concurrency), "-l", "warning", "-n", node]
            argv += ["--without-mingle", "--without-gossip"]
        proc = self.processes.start(name, argv, {**self.env, **env})
        self.workers.append(proc)
        return proc

    def send(self, payloads: list[dict[str, object]]) -> None:
        with self.producer.producer_or_acquire() as producer:
            for payload in payloads:
                self.producer.send_task(
                    "quoteguard.moderate", args=[payload], queue=self.namespace, producer=producer
                )

    def wait_for(self, count: int, timeout: float) -> None:
        """Until `count` Decisions are on the stream; fail early if a worker died by itself."""
        deadline = time.monotonic() + timeout
        while self.results.length() < count:
            exited = [p.returncode for p in self.workers if p.poll() not in (None, -signal.SIGKILL)]
            if exited:
                pytest.fail(f"a worker exited with {exited}; logs in {self.processes.logs}")
            if time.monotonic() > deadline:
                unacked = [m for m in self.redis.hvals("unacked") if self.namespace in m]
                state = (
                    f"decisions={self.results.length()} queued={self.redis.llen(self.namespace)} "
                    f"unacked={len(unacked)} mutex_ttl={self.redis.ttl('unacked_mutex')}"
                )
                pytest.fail(f"timed out after {timeout} s waiting for {count} decisions: {state}")
            time.sleep(0.2)

    def decisions(self) -> list[Decision]:
        return [entry.decision for entry in self.results.read("0", count=100_000)]

    def sim_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.sim.url}/sim/stats", timeout=5).json()
        return stats


@pytest.fixture
def make_fleet(
    processes: Processes,
    redis_url: str,
    namespace: str,
    sim_factory: Callable[..., SimServer],
) -> Iterator[Callable[..., Fleet]]:
    """Build a fleet on a simulated model (tests/conftest.py's sim_factory) of a given config."""
    sims: list[SimServer] = []

    def build(
        sim_config: SimConfig | None = None,
        *,
        redis: str | None = None,
        on_request: Callable[[], None] | None = None,
        **env: str,
    ) -> Fleet:
        if on_request is None:
            sim = sim_factory(sim_config or SimConfig())
        else:
            # Our own server, to see each chat request arrive before the simulator does.
            sim = SimServer(sim_config or SimConfig())
            sim.app.add_middleware(_Arrivals, on_request=on_request)
            sims.append(sim.start())
        url = redis or redis_url
        worker_env = child_env(
            **{
                **FAST_WORKER_ENV,
                "QUOTEGUARD_REDIS_URL": url,
                "QUOTEGUARD_NAMESPACE": namespace,
                "QUOTEGUARD_BASE_URL": sim.base_url,
                **env,
            }
        )
        return Fleet(processes, url, namespace, sim, worker_env)

    yield build
    # Workers first, while the simulated model still answers their last calls.
    processes.stop_all()
    for sim in sims:
        sim.stop()


class _Arrivals:
    """ASGI middleware: calls `on_request` as each chat completion request arrives."""

    def __init__(self, app: Any, on_request: Callable[[], None]) -> None:
        self.app = app
        self.on_request = on_request

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
            self.on_request()
        await self.app(scope, receive, send)


def item_payloads(count: int, prefix: str = "item") -> list[dict[str, object]]:
    """Clean, violating (human_review without a calibration profile) and empty (error) items."""
    texts = [
        "Lovely weather today, see you at the market on Saturday.",
        "You are a worthless idiot and nobody wants you here.",
        "Thanks for the help yesterday, the recipe worked perfectly.",
        "Shut up, you pathetic moron, you embarrass everyone.",
        "",  # empty content: an error Decision, routed to review
    ]
    return [{"id": f"{prefix}-{n}", "text": texts[n % len(texts)]} for n in range(count)]
