"""Hostile input against real workers on real Redis: nothing stops the fleet, nothing vanishes.

A corpus of hostile lines (through `quoteguard submit`), hostile task payloads and argument
lists (from a producer of the test's own), and raw poison messages written straight into the
queue and into a dead consumer's in-flight list: every line and task ends as exactly one
Decision, every poison message is set aside where `quoteguard queue --undeliverable` shows
it, every worker stays alive, and a worker started afterwards starts and works.
"""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.fixtures_workers import Fleet, wait_until
from tests.hostile import DEEP, deep_brackets, hostile_lines, shared_texts
from tests.test_workers_service import cli
from workers.transport import INFLIGHT_REGISTRY, UNDECODABLE

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = [pytest.mark.service, pytest.mark.timeout(180)]

FleetFactory = Callable[..., Fleet]


def envelope(
    namespace: str, body: bytes, *, tag: str, headers: dict[str, object] | None = None
) -> bytes:
    """A message as kombu stores it, routed to `namespace`, with `body` as its JSON body."""
    # The body last, so that `queue --undeliverable`'s head of each message names the test.
    return json.dumps(
        {
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"task": "quoteguard.moderate", "id": tag, "lang": "py"}
            if headers is None
            else headers,
            "properties": {
                "body_encoding": "base64",
                "delivery_info": {"exchange": "", "routing_key": namespace},
                "delivery_mode": 2,
                "priority": 0,
                "delivery_tag": tag,
                "correlation_id": tag,
            },
            "body": base64.b64encode(body).decode(),
        }
    ).encode()


def poison(namespace: str) -> list[bytes]:
    """Messages no worker can decode; each names the namespace, to be found again."""
    marker = json.dumps(namespace).encode()
    return [
        b'{"ns": ' + marker + b', "x": ' + deep_brackets(DEEP) + b"}",  # envelope too deep
        marker + b"\xff\xfe not JSON at all",
        envelope(namespace, b"[" + marker + b", {not json", tag=f"{namespace}-badbody"),
        envelope(namespace, b"[" + marker + b"," + deep_brackets(DEEP) + b"]", tag=namespace),
    ]


def broker(fleet: Fleet) -> redis.Redis[bytes]:
    """Bytes in, bytes out: poison is not UTF-8."""
    return redis.Redis.from_url(fleet.redis_url)


def set_aside(fleet: Fleet) -> list[bytes]:
    marker = fleet.namespace.encode()
    return [m for m in broker(fleet).lrange(UNDECODABLE, 0, -1) if marker in m]


def plant_dead_list(fleet: Fleet, name: str, messages: list[bytes]) -> None:
    """What a consumer killed mid-delivery leaves: a registered list with no alive marker."""
    key = f"unacked_inflight:{fleet.namespace}-{name}"
    client = broker(fleet)
    for raw in messages:
        client.lpush(key, raw)
    client.hset(INFLIGHT_REGISTRY, key, f"{key}:alive")


@pytest.fixture
def fleet(make_fleet: FleetFactory) -> Iterator[Fleet]:
    """A fleet logging at info; its poison is taken out of the db-wide set-aside list after."""
    built = make_fleet(QUOTEGUARD_LOG_LEVEL="info")
    yield built
    client = broker(built)
    for raw in set_aside(built):
        client.lrem(UNDECODABLE, 0, raw)


def task_body(*args: object, **kwargs: object) -> bytes:
    return json.dumps([list(args), kwargs, {}]).encode()


def test_hostile_corpus_and_poison_never_stop_the_fleet(fleet: Fleet, tmp_path: Path) -> None:
    """Every hostile line and task is one Decision, poison is set aside, workers live on."""
    ns = fleet.namespace
    # Before any worker starts: poison in the queue and in a dead consumer's list, beside a
    # real task that must still be decided.
    rescued = envelope(ns, task_body({"id": "rescued", "text": "hello there"}), tag=f"{ns}-r")
    plant_dead_list(fleet, "dead-1", [poison(ns)[0], rescued])
    for raw in poison(ns):
        broker(fleet).lpush(ns, raw)
    first = fleet.start_worker("first", concurrency=4)

    texts = shared_texts(per_source=2)
    lines = hostile_lines() + [
        json.dumps({"id": f"shared-{n}", "text": t}).encode() for n, t in enumerate(texts)
    ]
    items = tmp_path / "items.jsonl"
    items.write_bytes(b"\n".join(lines) + b"\n")
    submitted = cli(fleet, "submit", str(items))
    assert submitted.returncode == 0, submitted.stderr
    assert f"queued {len(lines)} lines: {len(texts) + 2} items, 9 refused" in submitted.stdout

    # Hostile payloads and argument lists, as a foreign producer sends them.
    fleet.send(
        [
            {"id": "direct-surrogate", "text": "a \ud800 b"},
            {"id": "x\udfff", "text": "surrogate id"},
            {"id": 4242, "text": "numeric id"},
            {"id": {"an": "object"}, "text": "object id"},
        ]
    )
    for args, kwargs in (([], {}), (["a", "b"], {}), ([], {"item": {"id": "kw", "text": "hi"}})):
        fleet.producer.send_task("quoteguard.moderate", args=args, kwargs=kwargs, queue=ns)

    expected = len(lines) + 4 + 3 + 1  # lines, payloads, argument lists, the rescued task
    fleet.wait_for(expected, timeout=90)
    wait_until(lambda: len(set_aside(fleet)) == 5, 20, "the poison to be set aside")

    # A worker started now, with more poison abandoned meanwhile, starts and works.
    plant_dead_list(fleet, "dead-2", [poison(ns)[0]])
    second = fleet.start_worker("second", concurrency=2)
    wait_until(lambda: len(set_aside(fleet)) == 6, 20, "the second dead list to be swept")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0  # a warm shutdown, not a crash
    fleet.workers.remove(first)
    fleet.send([{"id": "after", "text": "taken by the second worker"}])
    fleet.wait_for(expected + 1, timeout=60)
    assert second.poll() is None

    decisions = fleet.decisions()
    assert len(decisions) == expected + 1  # exactly one each: none lost, none twice
    by_id = {d.item_id: d for d in decisions}
    assert len(by_id) == len(decisions)
    for item_id, problem in (
        ("items.jsonl:1", "nested deeper than 64 levels"),
        ("surrogate-text", "text has a lone surrogate"),
        ("items.jsonl:4", "id has a lone surrogate"),
        ("items.jsonl:7", "Unterminated string"),
        ("direct-surrogate", "text has a lone surrogate"),
    ):
        assert by_id[item_id].errors[0].kind == "invalid_input", item_id
        assert problem in by_id[item_id].errors[0].message, item_id
    assert {"42", "4242", "rescued", "kw", "after"} <= set(by_id)
    assert all(f"shared-{n}" in by_id for n in range(len(texts)))
    messages = [d.errors[0].message for d in decisions if d.errors]
    assert sum("the task takes one argument" in m for m in messages) == 2

    shown = cli(fleet, "queue", "--undeliverable", "--limit", "1000")
    assert sum(ns in line for line in shown.stdout.splitlines()[1:]) == 6

    logs = b"".join(p.read_bytes() for p in fleet.processes.logs.glob("*.log"))
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw.encode() not in logs
    assert b"RecursionError" not in logs
    # Celery's own lines pass our renderer, at their own level (not relabelled WARNING).
    events = [json.loads(line) for line in logs.splitlines() if line.startswith(b"{")]
    assert any(e.get("logger") == "celery.app.trace" and e["level"] == "info" for e in events)
    assert any(e["event"] == "worker_starting" and e["level"] == "info" for e in events)
    assert b"WARNING/MainProcess" not in logs


def test_messages_celery_cannot_run_are_set_aside(fleet: Fleet) -> None:
    """Well-formed JSON that is no runnable task neither stalls, kills nor vanishes."""
    ns = fleet.namespace
    item = task_body({"id": "never-run", "text": "hi"})
    refused = [
        # Judged before delivery: Celery stalled its consumer for good (KeyError 'id'),
        # died (a task name that is a list, a body that is no argument list) or acked the
        # task away as failed (keyword arguments that are no mapping).
        envelope(ns, item, tag=f"{ns}-1", headers={"task": "quoteguard.moderate"}),
        envelope(ns, item, tag=f"{ns}-2", headers={"task": ["x"], "id": f"{ns}-2"}),
        envelope(ns, b'"just a string"', tag=f"{ns}-3"),
        envelope(ns, b'[[], "x", {}]', tag=f"{ns}-4"),
        # Only Celery finds these out: a header it cannot read (the worker died), a task it
        # does not know, a message that is no task (each acked away with a log line).
        envelope(
            ns,
            item,
            tag=f"{ns}-5",
            headers={"task": "quoteguard.moderate", "id": "5", "timelimit": "x"},
        ),
        envelope(ns, item, tag=f"{ns}-6", headers={"task": "no.such.task", "id": f"{ns}-6"}),
        envelope(ns, item, tag=f"{ns}-7", headers={"id": f"{ns}-7"}),
    ]
    for raw in refused:
        broker(fleet).lpush(ns, raw)
    worker = fleet.start_worker("only", concurrency=2)
    fleet.send([{"id": "after", "text": "decided all the same"}])
    fleet.wait_for(1, timeout=60)
    wait_until(lambda: len(set_aside(fleet)) == len(refused), 20, "the refused to be set aside")
    assert worker.poll() is None
    assert [d.item_id for d in fleet.decisions()] == ["after"]
    assert broker(fleet).llen(ns) == 0
    assert not [m for m in broker(fleet).hvals("unacked") if ns.encode() in m]


def test_a_damaged_dedupe_record_does_not_lose_the_item(fleet: Fleet) -> None:
    """An item whose dedupe record was overwritten with garbage is decided, not acked away
    as a failed task (it raised in the task, and again in the task's own error path)."""
    fleet.start_worker("only", concurrency=2)
    fleet.send([{"id": "first", "text": "hello"}])
    fleet.wait_for(1, timeout=60)
    key = fleet.decisions()[0].key.removesuffix(":first") + ":victim"
    fleet.redis.set(fleet.results.dedupe_key(key), "not json")
    fleet.send([{"id": "victim", "text": "hello again"}])
    fleet.wait_for(2, timeout=30)
    assert [d.item_id for d in fleet.decisions()] == ["first", "victim"]
    seen = fleet.results.seen(key)
    assert seen is not None
    assert seen.outcome == fleet.decisions()[1].outcome
