"""Faults with real processes: a worker killed mid-run, a misbehaving provider, Redis restarted.

Each run is bounded in items and time. The invariant every test checks: each submitted item
ends as exactly one Decision (and, if it needs a person, in the review queue).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest

from pipeline.sim.config import FaultConfig, LatencyConfig, SimConfig
from tests.fixtures_workers import Fleet, item_payloads, wait_until

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = [pytest.mark.service, pytest.mark.slow]

FleetFactory = Callable[..., Fleet]


def assert_one_decision_each(fleet: Fleet, payloads: list[dict[str, object]]) -> None:
    decisions = fleet.decisions()
    ids = Counter(d.item_id for d in decisions)
    assert set(ids) == {str(p["id"]) for p in payloads}
    assert max(ids.values()) == 1, [k for k, n in ids.items() if n > 1][:5]
    review = Counter(d.outcome for d in decisions)
    assert fleet.review.size().queued == review["human_review"] + review["error"]


@pytest.mark.timeout(180)
def test_worker_killed_mid_run(make_fleet: FleetFactory) -> None:
    """kill -9 one of two workers during 2,000 items, restart it: one Decision per item."""
    fleet = make_fleet(SimConfig(latency=LatencyConfig(mean_ms=2, distribution="lognormal")))
    victim = fleet.start_worker("victim", concurrency=16)
    fleet.start_worker("survivor", concurrency=16)
    payloads = item_payloads(2000)
    fleet.send(payloads)
    wait_until(lambda: fleet.results.length() >= 400, 90, "400 decisions before the kill")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    # The kill stranded messages: reserved by the victim, unacked, to be redelivered.
    stranded = [m for m in fleet.redis.hvals("unacked") if json.loads(m)[2] == fleet.namespace]
    assert stranded
    fleet.start_worker("restarted", concurrency=16)
    # The victim's reserved messages come back after the 10 s visibility timeout.
    fleet.wait_for(2000, timeout=150)
    assert_one_decision_each(fleet, payloads)
    wait_until(lambda: fleet.redis.llen(fleet.namespace) == 0, 10, "an empty queue")
    # Only items in flight at the kill can have been called twice (at most its concurrency);
    # redelivered items that were already published are skipped before the model call.
    calls = fleet.sim_stats()["requests"]
    with_content = sum(1 for p in payloads if p["text"])
    assert with_content <= calls <= with_content + 16


@pytest.mark.timeout(150)
def test_misbehaving_provider(make_fleet: FleetFactory) -> None:
    """429s, 500s, timeouts, malformed and truncated JSON at double-digit rates: every item
    ends as a Decision (failures as error Decisions in review) and calls stay bounded."""
    faults = FaultConfig(
        rate_limit=0.15,
        server_error=0.10,
        timeout=0.05,
        malformed=0.10,
        truncated=0.05,
        retry_after_ms=100,
        timeout_s=3,  # the workers' client gives up after 2 s
    )
    fleet = make_fleet(SimConfig(faults=faults, seed=7))
    fleet.start_worker(concurrency=24)
    payloads = item_payloads(300)
    fleet.send(payloads)
    fleet.wait_for(300, timeout=120)
    assert_one_decision_each(fleet, payloads)
    stats = fleet.sim_stats()
    assert all(stats["faults"][kind] > 0 for kind in ("rate_limit", "server_error", "timeout"))
    # Bound: per task run (re-asks + 1) x (truncation retries + 1) calls with no SDK
    # retries (FAST_WORKER_ENV), and at most max_retries + 1 runs.
    with_content = sum(1 for p in payloads if p["text"])
    per_item = 2 * 2 * (4 + 1)
    assert stats["requests"] <= with_content * per_item
    errors = [d for d in fleet.decisions() if d.outcome == "error" and d.usage.calls == 0]
    print(f"calls {stats['requests']} for {with_content} items; {len(errors)} error Decisions")


@pytest.mark.timeout(90)
def test_retries_honour_retry_after_then_review(make_fleet: FleetFactory) -> None:
    """A provider that always answers 429 gets max_retries + 1 calls per item, spaced by its
    Retry-After; then the item is an error Decision in the review queue, not lost."""
    faults = FaultConfig(rate_limit=1.0, retry_after_ms=300)
    fleet = make_fleet(SimConfig(faults=faults))
    fleet.start_worker(concurrency=10)
    payloads = [p for p in item_payloads(12) if p["text"]]
    sent_at = time.time()
    fleet.send(payloads)
    fleet.wait_for(len(payloads), timeout=60)
    decisions = fleet.decisions()
    assert {d.outcome for d in decisions} == {"error"}
    assert {d.errors[0].kind for d in decisions} == {"llm_transient"}
    assert fleet.sim_stats()["requests"] == len(payloads) * 5
    # Four countdowns of at least the 0.3 s Retry-After each.
    assert min(d.decided_at.timestamp() for d in decisions) - sent_at >= 4 * 0.3
    assert fleet.review.size().queued == len(payloads)
    entry = fleet.review.pending(limit=1)[0]
    assert entry.decision.errors[0].kind == "llm_transient"


@pytest.mark.timeout(150)
def test_redis_restarted_mid_run(
    make_fleet: FleetFactory, own_redis: Callable[[], subprocess.Popen[bytes]]
) -> None:
    """Redis (AOF on) stops and comes back during a run: nothing is lost or doubled."""
    server = own_redis()
    url = f"redis://127.0.0.1:{own_redis.port}/0"  # type: ignore[attr-defined]
    fleet = make_fleet(SimConfig(latency=LatencyConfig(mean_ms=5)), redis=url)
    fleet.start_worker(concurrency=16)
    payloads = item_payloads(600)
    fleet.send(payloads)
    wait_until(lambda: fleet.results.length() >= 150, 60, "150 decisions before the restart")
    server.terminate()  # SHUTDOWN: the AOF is flushed, as in a rolling restart
    server.wait(timeout=20)
    time.sleep(1.0)
    own_redis()
    fleet.wait_for(600, timeout=120)
    assert_one_decision_each(fleet, payloads)
