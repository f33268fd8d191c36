"""The Redis transport moves a message into a consumer's in-flight list; nothing is lost.

kombu pops a message with BRPOP and records it as unacked in a second round trip; a worker
that dies between the two, or a write that fails (Redis restarting), left the message
nowhere. These tests make each failure happen on demand, on a redis-server of the test's
own: an ACL that refuses the unacked record, and a consumer abandoned right after the move
(what kill -9 leaves behind).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection

from tests.fixtures_workers import wait_until
from workers.transport import INFLIGHT_REGISTRY

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = pytest.mark.service

TRANSPORT = "workers.transport:Transport"
ALIVE_TTL = 1


@pytest.fixture
def redis_port(own_redis: Callable[[], subprocess.Popen[bytes]]) -> int:
    own_redis()
    return int(own_redis.port)  # type: ignore[attr-defined]


@pytest.fixture
def admin(redis_port: int) -> Iterator[redis.Redis[str]]:
    client = redis.Redis(port=redis_port, decode_responses=True)
    yield client
    client.close()


def consumer(url: str) -> Connection:
    return Connection(url, transport=TRANSPORT, transport_options={"inflight_alive_ttl": ALIVE_TTL})


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
        for _ in range(3):
            time.sleep(ALIVE_TTL * 0.6)
            first.default_channel.qos.restore_visible()  # its own heartbeat
            second.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 0
        assert first.default_channel._brpop_read() is True  # delivered and recorded
        assert sum(inflight_lists(admin).values()) == 0
        assert admin.hlen("unacked") == 1


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
