"""kombu's Redis transport, with one loss window closed.

kombu takes a message with BRPOP (the message leaves the queue) and then, in a second
round trip, records it as unacked (the record that brings it back if the worker dies). If
Redis goes away between the two, as it does when it restarts, the message exists only in
the worker's memory: kombu raises, the consumer reconnects, and the message is gone. Our
Redis restart test lost one item in three runs that way.

Here a message whose unacked record could not be written is kept aside and put back on its
queue by the next restore sweep that reaches Redis (every `restore_interval_s`). It was
never handed to a task (kombu records before it delivers), so nothing runs twice because
of it; if the record did land after all, the item is delivered twice and the Decision
dedupe keeps one.

Still open, and inherent to BRPOP: a worker killed (kill -9, OOM) in the microseconds
between BRPOP and the unacked record loses that message. A reliable-queue transport
(BLMOVE into a per-consumer list) or RabbitMQ quorum queues close that one too.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
import structlog
from kombu.transport import redis as kombu_redis

log = structlog.get_logger("quoteguard.workers")

#: (raw message, exchange, routing key) popped but not recorded; per process.
_stranded: list[tuple[Any, str, str]] = []
_lock = threading.Lock()


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        try:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]
        except Exception:
            delivery = message.delivery_info
            with _lock:
                _stranded.append((message._raw, delivery["exchange"], delivery["routing_key"]))
            log.warning("message_stranded", delivery_tag=delivery_tag)
            raise

    def restore_visible(self, *args: Any, **kwargs: Any) -> Any:
        self._restore_stranded()
        return super().restore_visible(*args, **kwargs)  # type: ignore[no-untyped-call]

    def _restore_stranded(self) -> None:
        with _lock:
            if not _stranded:
                return
            pending = list(_stranded)
            try:
                with self.channel.conn_or_acquire() as client, client.pipeline() as pipe:
                    for raw, exchange, routing_key in pending:
                        self.channel._do_restore_message(raw, exchange, routing_key, pipe)
                    pipe.execute()
            except (redis.RedisError, OSError) as exc:  # still away: keep them for next time
                log.warning("stranded_restore_failed", count=len(pending), error=str(exc))
                return
            del _stranded[: len(pending)]
        log.warning("stranded_restored", count=len(pending))


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
