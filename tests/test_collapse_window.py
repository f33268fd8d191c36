"""The live collapse window shared through Redis: the fleet judges a model version together.

Several detectors on one Redis stand for several worker processes.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
import redis

from pipeline.calibration.collapse import CollapseRule, CollapseState
from pipeline.calibration.profile import ProfileStore
from pipeline.models import VerdictSignal
from pipeline.standing import SignalWatch
from tests.fixtures_workers import free_port
from workers.collapse_window import (
    RETIRE_AFTER_S,
    RedisCollapseDetector,
    collapsed_versions,
    seen_key,
)
from workers.metrics import QueueCollector
from workers.transport import UNDECODABLE

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = pytest.mark.service

RULE = CollapseRule(window=100, min_items=50)


def healthy(n: int, seed: int) -> list[float]:
    return [float(p) for p in np.random.default_rng(seed).beta(2.0, 0.6, n)]


def fleet(client: redis.Redis[str], namespace: str, size: int) -> list[RedisCollapseDetector]:
    return [RedisCollapseDetector(client, namespace, RULE) for _ in range(size)]


def test_workers_share_one_window(redis_client: redis.Redis[str], namespace: str) -> None:
    """Three workers each see a third of a collapsed stream: the collapse shows after 50
    verdicts in all, not 50 each, and every worker then reports it."""
    workers = fleet(redis_client, namespace, 3)
    states = [workers[i % 3].observe("m|fp", 1.0) for i in range(60)]
    assert [i for i, s in enumerate(states) if s.changed] == [49]
    assert all(w.observe("m|fp", 1.0).collapsed for w in workers)
    assert collapsed_versions(redis_client, namespace) == {"m|fp": True}


def test_each_transition_reported_once_across_threads_and_workers(
    redis_client: redis.Redis[str], namespace: str
) -> None:
    """Four workers x two threads feeding one version healthy, flat, healthy again: one
    collapse and one recovery in total."""
    workers = fleet(redis_client, namespace, 4)
    heard: list[CollapseState] = []
    lock = threading.Lock()

    def feed(worker: RedisCollapseDetector, values: list[float]) -> None:
        for p in values:
            state = worker.observe("shared", p)
            if state.changed:
                with lock:
                    heard.append(state)

    for phase, values in enumerate([healthy(400, 1), [1.0] * 400, healthy(400, 2)]):
        threads = [
            threading.Thread(target=feed, args=(w, values[k::8])) for k, w in enumerate(workers * 2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert collapsed_versions(redis_client, namespace)["shared"] is (phase == 1)
    assert [s.collapsed for s in heard] == [True, False]


def test_versions_are_independent_and_reset(redis_client: redis.Redis[str], namespace: str) -> None:
    worker = RedisCollapseDetector(redis_client, namespace, RULE)
    for p in healthy(100, 3):
        worker.observe("old", p)
    for _ in range(100):
        worker.observe("new", 1.0)
    assert collapsed_versions(redis_client, namespace) == {"old": False, "new": True}
    worker.reset("new")
    assert not worker.observe("new", 1.0).collapsed  # warming up again
    assert "new" not in collapsed_versions(redis_client, namespace)


def test_redis_away_keeps_the_last_state(redis_client: redis.Redis[str], namespace: str) -> None:
    """Redis unreachable: the observation is skipped, the last state stands, nothing raises."""
    worker = RedisCollapseDetector(redis_client, namespace, RULE)
    for _ in range(60):
        worker.observe("m", 1.0)
    worker.redis = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    worker._observe = worker.redis.register_script("return 0")
    state = worker.observe("m", 1.0)
    assert state.collapsed
    assert not state.changed
    assert state.reason == "shared window unavailable"


def test_signal_watch_stops_trusting_a_version_the_fleet_found_collapsed(
    redis_client: redis.Redis[str], namespace: str
) -> None:
    """A worker that has seen few verdicts itself distrusts a version the fleet judged
    collapsed, from its first verdict on."""
    busy = RedisCollapseDetector(redis_client, namespace, RULE)
    for _ in range(60):
        busy.observe("m|fp", 1.0)
    quiet = SignalWatch(ProfileStore(), RedisCollapseDetector(redis_client, namespace, RULE))
    assert quiet.collapse_reason("m", "fp") is None  # it has seen nothing yet
    quiet.standing("m", "fp", [VerdictSignal(p_true=1.0)])
    assert "share at p>=0.999" in (quiet.collapse_reason("m", "fp") or "")


def test_metrics_read_each_redis_and_retire_old_versions(
    redis_client: redis.Redis[str],
    namespace: str,
    own_redis: Callable[[], subprocess.Popen[bytes]],
) -> None:
    """/metrics reports collapsed versions from our Redis, the queue and set-aside messages
    from the broker's (here another server), and forgets versions not seen for a week."""
    own_redis()
    broker = redis.Redis(port=own_redis.port)  # type: ignore[attr-defined]
    broker.rpush(namespace, b"waiting")
    broker.rpush(UNDECODABLE, b"\xff")
    worker = RedisCollapseDetector(redis_client, namespace, RULE)
    for _ in range(60):
        worker.observe("m|fp", 1.0)
    for p in healthy(60, 4):
        worker.observe("ok|fp", p)
    for _ in range(60):
        worker.observe("retired|fp", 1.0)
    redis_client.hset(seen_key(namespace), "retired|fp", int(time.time()) - RETIRE_AFTER_S - 1)
    collector = QueueCollector(redis_client, broker, namespace, namespace)
    families = {f.name: f for f in collector.collect()}
    gauge = families["quoteguard_signal_collapsed"]
    samples = {s.labels["model_version"]: s.value for s in gauge.samples}
    assert samples == {"m|fp": 1, "ok|fp": 0}
    assert families["quoteguard_queue_depth"].samples[0].value == 1
    assert families["quoteguard_undeliverable_messages"].samples[0].value == 1
    assert redis_client.ttl(worker.window_key("m|fp")) > RETIRE_AFTER_S - 60
    broker.close()
