"""The Redis transport moves a message into a consumer's in-flight list; nothing is lost.

kombu pops a message with BRPOP and records it as unacked in a second round trip; a worker
that dies between the two, or a write that fails (Redis restarting), left the message
nowhere. These tests make each failure happen on demand, on a redis-server of the test's
own: an ACL that refuses the unacked record, and a consumer abandoned right after the move
(what kill -9 leaves behind).
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

from tests.fixtures_workers import wait_until
from tests.hostile import DEEP, deep_brackets
from workers.transport import INFLIGHT_REGISTRY, UNDECODABLE

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = pytest.mark.service

TRANSPORT = "workers.transport:Transport"
ALIVE_TTL = 2  # seconds; long enough that a loaded machine's stalls do not expire a live list


@pytest.fixture
def redis_port(own_redis: Callable[[], subprocess.Popen[bytes]]) -> int:
    own_redis()
    return int(own_redis.port)  # type: ignore[attr-defined]


@pytest.fixture
def admin(redis_port: int) -> Iterator[redis.Redis[str]]:
    client = redis.Redis(port=redis_port, decode_responses=True)
    yield client
    client.close()


def consumer(url: str, alive_ttl: float = ALIVE_TTL) -> Connection:
    return Connection(url, transport=TRANSPORT, transport_options={"inflight_alive_ttl": alive_ttl})


def inflight_lists(admin: redis.Redis[str]) -> dict[str, int]:
    return {key: admin.llen(key) for key in admin.hkeys(INFLIGHT_REGISTRY)}


def may_write_hashes(admin: redis.Redis[str], *, allowed: bool) -> None:
    """The consumer's user: everything, or everything except HSET (the unacked record)."""
    admin.acl_setuser(
        "worker",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"] if allowed else ["+@all", "-hset"],
    )


def put(url: str, queue: str, payload: dict[str, Any]) -> None:
    with Connection(url) as producer:
        producer.SimpleQueue(queue).put(payload)


def test_message_is_kept_when_unacked_record_fails(
    admin: redis.Redis[str], redis_port: int
) -> None:
    """Moved but not recorded: it waits in the in-flight list, then the next sweep returns it
    to its queue, once."""
    url = f"redis://worker:pw@127.0.0.1:{redis_port}/0"
    may_write_hashes(admin, allowed=True)
    with consumer(url) as conn:
        queue = conn.SimpleQueue("jobs")
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.2)  # starts consuming: its in-flight list is registered
        may_write_hashes(admin, allowed=False)  # and now the unacked record cannot be
        put(url, "jobs", {"item": 1})
        with pytest.raises(redis.exceptions.NoPermissionError):
            queue.get(timeout=2)
        assert admin.llen("jobs") == 0
        assert sum(inflight_lists(admin).values()) == 1  # left the queue, not the server
        may_write_hashes(admin, allowed=True)
        conn.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 1
        conn.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 1  # restored once, not on every sweep
        message = queue.get(timeout=2)
        assert message.payload == {"item": 1}
        message.ack()
    assert admin.llen("jobs") == 0
    assert inflight_lists(admin) == {}  # a closed consumer unregisters its list


def test_consumer_dead_after_the_move_loses_nothing(
    admin: redis.Redis[str], redis_port: int
) -> None:
    """A consumer that took a message and died before recording it (kill -9): the message
    stays in its in-flight list while the consumer could be alive, and comes back after."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    put(url, "jobs", {"item": 2})
    doomed = consumer(url)
    doomed.SimpleQueue("jobs").consumer.consume()
    channel: Any = doomed.default_channel
    # The move is sent as the worker's event loop sends it; its reply is never read: the
    # consumer "dies" with the message moved and not recorded.
    doomed.transport.cycle._register_BRPOP(channel)
    wait_until(lambda: admin.llen("jobs") == 0, 5, "the move")
    assert list(inflight_lists(admin).values()) == [1]

    with consumer(url) as survivor:
        queue = survivor.SimpleQueue("jobs")
        survivor.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 0  # the dead consumer's marker has not expired yet
        time.sleep(ALIVE_TTL + 0.5)
        survivor.default_channel.qos.restore_visible()
        message = queue.get(timeout=2)
        assert message.payload == {"item": 2}
        assert message.delivery_info["redelivered"]
        message.ack()
        survivor.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 0  # and only once
    assert channel.inflight_key not in inflight_lists(admin)
    channel.client.connection.disconnect()


def test_live_consumer_keeps_its_list_past_the_ttl(
    admin: redis.Redis[str], redis_port: int
) -> None:
    """A consumer that sweeps keeps its list alive: nobody takes its messages from it."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    with consumer(url) as first, consumer(url) as second:
        first.SimpleQueue("jobs").consumer.consume()
        second.SimpleQueue("jobs").consumer.consume()
        first.transport.cycle._register_BRPOP(first.default_channel)
        put(url, "jobs", {"item": 3})
        wait_until(lambda: sum(inflight_lists(admin).values()) == 1, 5, "the move")
        for _ in range(4):  # twice the TTL in all
            time.sleep(ALIVE_TTL * 0.5)
            first.default_channel.qos.restore_visible()  # its own heartbeat
            second.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 0
        assert first.default_channel._brpop_read() is True  # delivered and recorded
        assert sum(inflight_lists(admin).values()) == 0
        assert admin.hlen("unacked") == 1


def test_undecodable_messages_are_set_aside_not_looped(
    admin: redis.Redis[str], redis_port: int
) -> None:
    """A message that is not kombu JSON, taken by a consumer or found in a dead consumer's
    list, is kept aside for a person; the messages around it are delivered."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    put(url, "jobs", {"item": "before"})
    admin.lpush("jobs", "not json at all")
    put(url, "jobs", {"item": "after"})
    # A dead consumer's list with garbage and a real message in it.
    admin.lpush("unacked_inflight:dead", '{"properties": {}}')
    admin.lmove("jobs", "unacked_inflight:dead", "RIGHT", "LEFT")  # {"item": "before"}
    admin.hset(INFLIGHT_REGISTRY, "unacked_inflight:dead", "unacked_inflight:dead:alive")
    with consumer(url) as conn:
        conn.default_channel.qos.restore_visible()
        queue = conn.SimpleQueue("jobs")
        got = []
        for _ in range(2):
            message = queue.get(timeout=3)
            got.append(message.payload["item"])
            message.ack()
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.5)
    assert sorted(got) == ["after", "before"]
    assert set(admin.lrange(UNDECODABLE, 0, -1)) == {'{"properties": {}}', "not json at all"}
    assert admin.llen("jobs") == 0
    assert inflight_lists(admin) == {}


def test_poison_everywhere_never_stops_a_sweep(admin: redis.Redis[str], redis_port: int) -> None:
    """Nesting past the recursion limit in a dead consumer's list and in kombu's unacked
    record is set aside; the real messages beside it are restored and delivered."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    deep = deep_brackets(DEEP).decode()
    put(url, "jobs", {"item": "in the dead list"})
    admin.lmove("jobs", "unacked_inflight:dead", "RIGHT", "LEFT")
    admin.lpush("unacked_inflight:dead", deep)
    admin.hset(INFLIGHT_REGISTRY, "unacked_inflight:dead", "unacked_inflight:dead:alive")
    put(url, "jobs", {"item": "unacked"})
    good = json.loads(admin.rpop("jobs") or "")
    records = {"good": json.dumps([good, "", "jobs"]), "deep": deep, "odd": '["x", 1, 2]'}
    for tag, record in records.items():
        admin.hset("unacked", tag, record)
        admin.zadd("unacked_index", {tag: time.time() - 7200})  # past the visibility timeout
    with consumer(url) as conn:
        conn.default_channel.qos.restore_visible()
        queue = conn.SimpleQueue("jobs")
        got = []
        for _ in range(2):
            message = queue.get(timeout=3)
            got.append(message.payload["item"])
            message.ack()
    assert sorted(got) == ["in the dead list", "unacked"]
    assert sorted(admin.lrange(UNDECODABLE, 0, -1)) == sorted([deep, deep, '["x", 1, 2]'])
    assert admin.hlen("unacked") == 0
    assert inflight_lists(admin) == {}


def test_message_kombu_cannot_build_is_set_aside(admin: redis.Redis[str], redis_port: int) -> None:
    """Valid JSON that kombu cannot turn into a message (no delivery tag) is set aside once,
    not restored and retried forever; the next message is delivered."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    put(url, "jobs", {"item": "good"})
    broken = json.loads(admin.lindex("jobs", 0) or "")
    del broken["properties"]["delivery_tag"]
    admin.rpush("jobs", json.dumps(broken))  # consumed first
    with consumer(url) as conn:
        queue = conn.SimpleQueue("jobs")
        message = queue.get(timeout=3)
        assert message.payload == {"item": "good"}
        message.ack()
        time.sleep(ALIVE_TTL + 0.5)
        conn.default_channel.qos.restore_visible()
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.5)
    assert admin.llen(UNDECODABLE) == 1
    assert admin.llen("jobs") == 0


def test_idle_synchronous_consumer_keeps_its_list_alive(
    admin: redis.Redis[str], redis_port: int
) -> None:
    """gevent/eventlet pools drain events without kombu's restore sweep: the channel keeps
    its own marker alive as it waits, so another worker's sweep leaves its list alone."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    with consumer(url, alive_ttl=3) as idle, consumer(url, alive_ttl=3) as sweeper:
        idle.SimpleQueue("jobs").consumer.consume()
        sweeper.SimpleQueue("jobs").consumer.consume()
        channel: Any = idle.default_channel
        alive = []
        deadline = time.monotonic() + 6  # twice the TTL
        while time.monotonic() < deadline:
            with contextlib.suppress(socket.timeout):
                idle.drain_events(timeout=2.0)  # as Celery's synloop; outlasts an empty move
            sweeper.default_channel.qos.restore_visible()
            alive.append(bool(admin.exists(channel.inflight_alive_key)))
        assert all(alive)
        assert channel.inflight_key in inflight_lists(admin)


def test_dropped_connection_with_a_move_pending(admin: redis.Redis[str], redis_port: int) -> None:
    """kombu drops an overdue connection without reading its reply: the message the server
    moved is given up to the sweeps, not kept in a list its live consumer never reads."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    with consumer(url) as stuck, consumer(url) as other:
        stuck.SimpleQueue("jobs").consumer.consume()
        queue = other.SimpleQueue("jobs")
        channel: Any = stuck.default_channel
        stuck.transport.cycle._register_BRPOP(channel)
        put(url, "jobs", {"item": 4})
        wait_until(lambda: admin.llen(channel.inflight_key) == 1, 5, "the move")
        channel.client.connection.disconnect()  # kombu's health check does this
        time.sleep(ALIVE_TTL + 0.5)
        stuck.default_channel.qos.restore_visible()  # its own sweep beats its new list only
        message = queue.get(timeout=3)
        assert message.payload == {"item": 4}
        message.ack()


def test_several_queues_fall_back_to_brpop(admin: redis.Redis[str], redis_port: int) -> None:
    """BLMOVE reads one list; a consumer of two queues still gets both, the kombu way."""
    url = f"redis://127.0.0.1:{redis_port}/0"
    put(url, "a", {"q": "a"})
    put(url, "b", {"q": "b"})
    with consumer(url) as conn:
        got: list[Any] = []

        def on_message(body: Any, message: Any) -> None:
            got.append(body)
            message.ack()

        queues = [conn.SimpleQueue("a").queue, conn.SimpleQueue("b").queue]
        with conn.Consumer(queues, callbacks=[on_message]):
            deadline = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < deadline:
                conn.drain_events(timeout=1)
    assert sorted(g["q"] for g in got) == ["a", "b"]
    assert inflight_lists(admin) == {}
