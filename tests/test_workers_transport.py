"""The Redis transport keeps a message whose unacked record could not be written.

kombu pops a message with BRPOP and records it as unacked in a second round trip; if that
write fails (Redis restarting) the message would exist nowhere. An ACL that refuses the
write makes the failure happen on demand, on a redis-server of the test's own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
import redis
from kombu import Connection

pytest_plugins = ["tests.fixtures_workers"]

pytestmark = pytest.mark.service


def test_message_is_put_back_when_unacked_record_fails(
    own_redis: Callable[[], subprocess.Popen[bytes]],
) -> None:
    """Popped but not recorded: the next restore sweep returns it to its queue, once."""
    own_redis()
    port = own_redis.port  # type: ignore[attr-defined]
    admin = redis.Redis(port=port, decode_responses=True)
    # A user that may do everything except write the unacked record.
    admin.acl_setuser(
        "worker",
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-hset"],
    )
    url = f"redis://worker:pw@127.0.0.1:{port}/0"
    with Connection(url) as producer_conn:
        producer_conn.SimpleQueue("jobs").put({"item": 1})
    assert admin.llen("jobs") == 1

    with Connection(url, transport="workers.transport:Transport") as conn:
        queue = conn.SimpleQueue("jobs")
        with pytest.raises(redis.exceptions.NoPermissionError):
            queue.get(timeout=2)
        assert admin.llen("jobs") == 0  # popped, and recorded nowhere
        admin.acl_setuser("worker", commands=["+hset"])
        conn.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 1
        conn.default_channel.qos.restore_visible()
        assert admin.llen("jobs") == 1  # restored once, not on every sweep
        message = queue.get(timeout=2)
        assert message.payload == {"item": 1}
        message.ack()
