"""Real Celery worker processes on the real Redis, with the simulated model as provider."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures_workers import (
    PYTHON,
    ROOT,
    Fleet,
    Receiver,
    free_port,
    item_payloads,
    wait_until,
)
from workers.transport import UNDECODABLE
from workers.webhook import DELIVERY_HEADER, KEY_HEADER, SIGNATURE_HEADER, verify

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = [pytest.mark.service, pytest.mark.timeout(120)]

FleetFactory = Callable[..., Fleet]


def cli(fleet: Fleet, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`quoteguard <workers command>` in a fresh process with the fleet's settings."""
    return subprocess.run(
        [PYTHON, "-m", "workers.cli", *args],
        cwd=ROOT,
        env=fleet.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestFlow:
    def test_every_item_one_decision(self, make_fleet: FleetFactory) -> None:
        """Each item ends as exactly one Decision; review outcomes also wait in the queue."""
        fleet = make_fleet()
        fleet.start_worker(concurrency=8, via_cli=True)
        payloads = item_payloads(200)
        fleet.send(payloads)
        fleet.wait_for(200, timeout=60)
        decisions = fleet.decisions()
        assert sorted(d.item_id for d in decisions) == sorted(str(p["id"]) for p in payloads)
        outcomes = Counter(d.outcome for d in decisions)
        assert set(outcomes) == {"no_violation", "human_review", "error"}
        assert fleet.review.size().queued == outcomes["human_review"] + outcomes["error"]
        entry = fleet.review.pending(limit=1)[0]
        assert entry.item.text == next(p["text"] for p in payloads if p["id"] == entry.item.id)
        # One model call per item with content, none for the empty ones: no duplicate work.
        assert fleet.sim_stats()["requests"] == sum(1 for p in payloads if p["text"])

    def test_resubmitted_items_yield_one_decision(self, make_fleet: FleetFactory) -> None:
        """Sending the same items again makes no new Decision and no new model call; items
        resent under their old ids with edited text are answered the same way, and said."""
        fleet = make_fleet()
        fleet.start_worker(concurrency=4)
        payloads = [p for p in item_payloads(40) if p["text"]]
        fleet.send(payloads)
        fleet.wait_for(len(payloads), timeout=60)
        edited = [{**p, "text": f"{p['text']} (edited)"} for p in payloads[:5]]
        fleet.send(payloads[5:] + edited)
        # The duplicates are consumed too: wait for the queue to drain, then a moment more.
        wait_until(lambda: fleet.redis.llen(fleet.namespace) == 0, 30, "queue drained")
        time.sleep(1.5)
        assert fleet.results.length() == len(payloads)
        assert fleet.sim_stats()["requests"] == len(payloads)
        logs = "".join(p.read_text() for p in fleet.processes.logs.glob("*.log"))
        assert logs.count("resubmitted_with_other_text") == len(edited)

    def test_malformed_payloads_become_error_decisions(self, make_fleet: FleetFactory) -> None:
        """A message that is no item (foreign producer) still ends in review, not nowhere."""
        fleet = make_fleet()
        fleet.start_worker(concurrency=2)
        fleet.send([{"id": "no-text"}, {"text": "no id"}, {"id": "x", "text": 5, "extra": 1}])
        fleet.wait_for(3, timeout=30)
        decisions = fleet.decisions()
        assert {d.outcome for d in decisions} == {"error"}
        assert all(d.errors[0].kind == "invalid_input" for d in decisions)
        assert fleet.review.size().queued == 3


class TestCommands:
    def test_submit_results_review(self, make_fleet: FleetFactory, tmp_path: Path) -> None:
        """`submit` a JSONL file (bad lines too), read `results`, claim and resolve by CLI."""
        fleet = make_fleet()
        fleet.start_worker(concurrency=4)
        lines = [json.dumps(p) for p in item_payloads(10) if p["text"]]
        lines += ["{not json", json.dumps({"text": "no id"})]
        items = tmp_path / "items.jsonl"
        items.write_text("\n".join(lines) + "\n")
        done = cli(fleet, "submit", str(items))
        assert done.returncode == 0, done.stderr
        assert "queued 10 lines: 8 items, 2 refused" in done.stdout
        fleet.wait_for(10, timeout=60)

        shown = cli(fleet, "results", "--count", "100")
        records = [json.loads(line) for line in shown.stdout.splitlines()]
        assert len(records) == 10
        assert sum(r["decision"]["outcome"] == "error" for r in records) == 2

        claimed = cli(fleet, "review", "claim", "--reviewer", "ops-1")
        assert claimed.returncode == 0, claimed.stderr
        claim = json.loads(claimed.stdout)
        key, token = claim["entry"]["key"], claim["token"]
        resolved = cli(fleet, "review", "resolve", key, "--token", token, "--no-violation")
        assert resolved.returncode == 0, resolved.stderr
        assert json.loads(resolved.stdout)["reviewer"] == "ops-1"
        # (A second resolution, lease expiry and export are covered in test_review_queue.)
        assert [e.key for e in fleet.review.labelled()] == [key]


class TestWebhook:
    def test_decisions_delivered_signed_despite_failures(self, make_fleet: FleetFactory) -> None:
        """Every Decision reaches the receiver, signed, after it answered 503s at first."""
        receiver = Receiver()
        try:
            receiver.statuses.extend([(503, {"Retry-After": "0"})] * 5)
            fleet = make_fleet(
                QUOTEGUARD_WEBHOOK_URL=receiver.url,
                QUOTEGUARD_WEBHOOK_SECRET="hook-secret",
            )
            fleet.start_worker(concurrency=4)
            payloads = item_payloads(20)
            fleet.send(payloads)
            fleet.wait_for(20, timeout=60)

            def delivered() -> set[str]:
                with receiver.lock:
                    return {h[KEY_HEADER] for h, _ in receiver.received[5:]}

            wait_until(lambda: len(delivered()) == 20, 30, "20 webhook deliveries")
            with receiver.lock:
                received = list(receiver.received)
            assert all(verify("hook-secret", body, h[SIGNATURE_HEADER]) for h, body in received)
            by_delivery = Counter(h[DELIVERY_HEADER] for h, _ in received)
            assert max(by_delivery.values()) > 1  # a failed delivery was retried, same id
            keys = {json.loads(b)["item_id"] for _, b in received}
            assert keys == {str(p["id"]) for p in payloads}
        finally:
            receiver.close()


class TestOperations:
    def test_refuses_visibility_timeout_shorter_than_a_task(self, make_fleet: FleetFactory) -> None:
        """A worker whose messages could come back mid-task does not start at all."""
        fleet = make_fleet(QUOTEGUARD_TIMEOUT_S="60", QUOTEGUARD_VISIBILITY_TIMEOUT_S="10")
        proc = fleet.start_worker("misconfigured")
        assert proc.wait(timeout=60) != 0
        log = next(fleet.processes.logs.glob("misconfigured-*.log")).read_text()
        assert "worker_config_invalid" in log
        assert "visibility_timeout_s=10 must exceed" in log

    def test_metrics_endpoint(self, make_fleet: FleetFactory) -> None:
        """/metrics (on 127.0.0.1 only) counts items by outcome and reports queue depth,
        review queue size, and a broker message no worker could read (set aside)."""
        port = free_port()
        fleet = make_fleet(QUOTEGUARD_METRICS_PORT=str(port))
        fleet.redis.lpush(fleet.namespace, "not a celery message")
        fleet.start_worker(concurrency=4)
        payloads = item_payloads(25)
        fleet.send(payloads)
        fleet.wait_for(25, timeout=60)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        samples = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("quoteguard_")
        }
        outcomes = Counter(d.outcome for d in fleet.decisions())
        for outcome, count in outcomes.items():
            assert samples[f'quoteguard_items_total{{outcome="{outcome}"}}'] == count
        assert samples["quoteguard_queue_depth"] == 0
        assert samples["quoteguard_undeliverable_messages"] >= 1
        assert "not a celery message" in fleet.redis.lrange(UNDECODABLE, 0, -1)
        fleet.redis.lrem(UNDECODABLE, 0, "not a celery message")  # the db's, not namespaced
        queued = outcomes["human_review"] + outcomes["error"]
        assert samples['quoteguard_review_queue_size{state="queued"}'] == queued
        assert samples["quoteguard_llm_calls_total"] == sum(1 for p in payloads if p["text"])
        # Bound to 127.0.0.1 by default: another address of this very machine is refused.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5)

    def test_rate_limit_shared_by_two_workers(self, make_fleet: FleetFactory) -> None:
        """Two worker processes together stay within one requests-per-window budget."""
        arrivals: list[float] = []
        fleet = make_fleet(
            on_request=lambda: arrivals.append(time.monotonic()),
            QUOTEGUARD_RPM="8",
            QUOTEGUARD_RATE_WINDOW_S="2",
            QUOTEGUARD_RATE_WAIT_MAX_S="5",
            # Waits of up to 5 s make a longer task: the start-up check wants more than 10 s.
            QUOTEGUARD_VISIBILITY_TIMEOUT_S="30",
        )
        fleet.start_worker("a", concurrency=8)
        fleet.start_worker("b", concurrency=8)
        payloads = [p for p in item_payloads(30) if p["text"]][:24]
        fleet.send(payloads)
        fleet.wait_for(24, timeout=60)
        # Requests as the provider saw them arrive: 24 at 8 per 2 s take two more windows,
        # and no 2 s window (less a little for the trip from gate to provider) holds more.
        assert len(arrivals) == 24
        assert arrivals[-1] - arrivals[0] >= 3.6
        busiest = max(sum(1 for t in arrivals if s <= t < s + 1.8) for s in arrivals)
        assert busiest <= 8
        assert fleet.sim_stats()["errors"] == {}

    def test_flower_sees_the_workers(self, make_fleet: FleetFactory) -> None:
        """Flower, pointed at the app, lists the worker and its succeeded tasks."""
        fleet = make_fleet()
        fleet.start_worker("flowered", concurrency=2)
        port = free_port()
        fleet.processes.start(
            "flower",
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "workers.app",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
            ],
            {**fleet.env, "FLOWER_UNAUTHENTICATED_API": "true"},
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{base}/healthcheck", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, "flower")

        def worker_heard() -> bool:
            alive = httpx.get(f"{base}/api/workers?status=1", timeout=5).json()
            return any(name.startswith("flowered-") and ok for name, ok in alive.items())

        # Flower answers its health check before its event receiver has subscribed, and task
        # events published before that are gone (Redis pub/sub). A worker heartbeat seen in
        # Flower's event state means the receiver is listening.
        wait_until(worker_heard, 30, "flower to hear the worker's heartbeat", every=0.5)
        fleet.send(item_payloads(5))
        fleet.wait_for(5, timeout=30)

        def tasks_seen() -> bool:
            tasks = httpx.get(f"{base}/api/tasks", timeout=5).json()
            done = [t for t in tasks.values() if t["state"] == "SUCCESS"]
            return len(done) >= 5 and all(
                t["name"] == "quoteguard.moderate" and t["worker"].startswith("flowered-")
                for t in done
            )

        # From the worker's task events: Flower knows the tasks, their state and the worker.
        wait_until(tasks_seen, 30, "flower to see 5 succeeded tasks", every=0.5)
