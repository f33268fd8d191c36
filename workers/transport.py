"""kombu's Redis transport, with its loss window closed: messages are moved, not popped.

kombu takes a message with BRPOP (the message leaves the queue) and then, in a second round
trip, records it as unacked (the record that brings it back if the worker dies). A worker
killed between the two (kill -9, OOM), or a Redis restart between them, left the message in
no place at all: our kill test lost one item in a few runs, the Redis restart test one in
three.

Here a consumer takes a message with BLMOVE into an in-flight list of its own, atomically,
and removes it from there in the transaction that writes kombu's unacked record: the
message is always in the queue, the list or the record, and no round trip is added.
Every in-flight list is registered in the `unacked_inflight` hash and kept alive by a
marker key that its channel refreshes at each restore sweep. When the marker is gone (the
process died, or the channel gave the list up after an error), any worker's next sweep
puts what the list holds back on its queue. A message can be delivered twice (a consumer
taken for dead while it stalled), never zero times; the Decision dedupe keeps one. A
message that is not kombu JSON is set aside in `unacked_inflight:undecodable` rather than
redelivered in a loop.

BLMOVE takes one source list. A channel consuming several queues falls back to kombu's
BRPOP, with its window, and says so once in the log; message priorities are off by default
so that each queue is one list.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
import weakref
from queue import Empty
from typing import Any

import redis
import structlog
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str

from pipeline.inputs import nesting_exceeds

log = structlog.get_logger("quoteguard.workers")

#: Hash of every in-flight list: list key -> the key of its alive marker.
INFLIGHT_REGISTRY = "unacked_inflight"
#: Messages that are not kombu JSON: kept here for a person, never redelivered in a loop.
UNDECODABLE = "unacked_inflight:undecodable"


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        """kombu's unacked record, and in the same transaction the message leaves the
        in-flight list: it is in exactly one of the two at any instant, and no round trip
        is added."""
        raw = self.channel.take_handover()
        if raw is None:
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        record = json.dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()})
            pipe.hset(self.unacked_key, delivery_tag, record)
            pipe.lrem(self.channel.inflight_key, 1, raw)
            pipe.execute()
        self.channel.recorded_tag = delivery_tag
        virtual.QoS.append(self, message, delivery_tag)  # kombu's in-memory bookkeeping

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """kombu's, except that a message refused for good is set aside, not deleted: Celery
        refuses what it cannot read as a task (no task name, an unknown one, arguments that
        are not a list), and such a message must not vanish with a log line."""
        if requeue:
            super().reject(delivery_tag, requeue=True)
            return
        self.set_aside(delivery_tag, reason="refused by the worker")
        virtual.QoS.ack(self, delivery_tag)  # kombu's in-memory bookkeeping

    def set_aside(self, delivery_tag: str, reason: str) -> None:
        """Move the message of an unacked record to the set-aside list, in one transaction."""
        kept: list[int] = []

        def move(pipe: Any) -> None:
            raw = pipe.hget(self.unacked_key, delivery_tag)
            pipe.multi()
            self._remove_from_indices(delivery_tag, pipe)
            kept.clear()  # a WATCH retry starts afresh
            if raw:
                record = unacked_record(raw)
                message = raw if record is None else json.dumps(record[0]).encode()
                pipe.rpush(UNDECODABLE, message)
                kept.append(len(message))

        with self.channel.conn_or_acquire() as conn:
            conn.transaction(move, self.unacked_key)
        if kept:
            report_set_aside(reason, kept[0])

    def restore_visible(self, *args: Any, **kwargs: Any) -> Any:
        # kombu calls this every unacked_restore_interval on one consuming channel. Its own
        # sweep of the unacked record runs whatever happens to ours.
        try:
            with self.channel.conn_or_acquire() as client:
                self.channel.connection.beat_inflight(client)
                restore_abandoned(self.channel, client)
        finally:
            return_value = super().restore_visible(*args, **kwargs)
        return return_value

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        """kombu's, except that a record it cannot decode (written by anyone with access to
        Redis) is set aside rather than raising in every sweep of every worker."""
        undecodable: list[int] = []

        def restore_transaction(pipe: Any) -> None:
            raw = pipe.hget(self.unacked_key, tag)
            pipe.multi()
            self._remove_from_indices(tag, pipe)
            undecodable.clear()  # a WATCH retry starts afresh
            if not raw:
                return
            record = unacked_record(raw)
            if record is None:
                pipe.rpush(UNDECODABLE, raw)
                undecodable.append(len(raw))
                return
            message, exchange, routing_key = record
            self.channel._do_restore_message(message, exchange, routing_key, pipe, leftmost)

        with self.channel.conn_or_acquire(client) as conn:
            conn.transaction(restore_transaction, self.unacked_key)
        if undecodable:
            report_set_aside("unacked record not decodable", undecodable[0])


def report_set_aside(reason: str, size: int) -> None:
    # Its length only: the content may be hostile, and it is kept in Redis for a person.
    log.error("message_undeliverable", reason=reason, bytes=size, kept_in=UNDECODABLE)


def restore_abandoned(channel: Channel, client: redis.Redis[bytes]) -> int:
    """Put back the contents of every in-flight list whose alive marker has expired."""
    registry = client.hgetall(INFLIGHT_REGISTRY)
    if not registry:
        return 0
    keys = list(registry)
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(registry[key])
        alive = pipe.execute()
    restored = 0
    for key, is_alive in zip(keys, alive, strict=True):
        if is_alive:
            continue
        try:
            restored += channel.restore_inflight(client, bytes_to_str(key))
        except (redis.ConnectionError, redis.TimeoutError):
            raise  # Redis is gone: the next sweep tries again
        except Exception as exc:  # noqa: BLE001 - one damaged list must not stop the sweep
            log.error("inflight_restore_failed", list=bytes_to_str(key), error=type(exc).__name__)
    return restored


class Channel(kombu_redis.Channel):
    QoS = QoS

    #: One list per queue: BLMOVE reads one list, and this transport does not use priorities.
    priority_steps = [0]  # noqa: RUF012 - kombu's own attribute, a list there too
    #: Seconds an in-flight list outlives its channel's last sweep; a few sweep intervals.
    inflight_alive_ttl = 30

    from_transport_options = (  # type: ignore[assignment]  # one option more than kombu's
        *kombu_redis.Channel.from_transport_options,
        "inflight_alive_ttl",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._moving_from: str | None = None
        self._handover: bytes | None = None
        #: The delivery tag QoS.append last recorded as unacked, while a delivery runs.
        self.recorded_tag: str | None = None
        self._warned_multi = False
        self._server_moves: bool | None = None  # BLMOVE needs Redis 6.2
        self._new_inflight_list()
        # Kept: kombu detaches self.connection on some close paths.
        self._peers: weakref.WeakSet[Channel] = self.connection.inflight_channels
        self._peers.add(self)

    # -- the in-flight list ----------------------------------------------------------------

    def _new_inflight_list(self) -> None:
        name = f"{INFLIGHT_REGISTRY}:{uuid.uuid4().hex}"
        self.inflight_key = name
        self.inflight_alive_key = f"{name}:alive"
        self._inflight_registered = False
        self._beaten_at = 0.0

    def register_inflight(self, client: redis.Redis[bytes]) -> None:
        """Mark the list alive and registered; again at every sweep (a sweep that took this
        channel for dead while it stalled removed the registration)."""
        with client.pipeline(transaction=False) as pipe:
            pipe.set(self.inflight_alive_key, int(time.time()), ex=self.inflight_alive_ttl)
            pipe.hset(INFLIGHT_REGISTRY, self.inflight_key, self.inflight_alive_key)
            pipe.execute()
        self._inflight_registered = True
        self._beaten_at = time.monotonic()

    def _due_for_beat(self) -> bool:
        # Sweeps beat every restore interval on Celery's event loop, but the synchronous
        # loop of gevent/eventlet pools skips them while idle: each move checks too.
        elapsed = time.monotonic() - self._beaten_at
        return not self._inflight_registered or elapsed > self.inflight_alive_ttl / 3

    def _give_up_inflight_list(self, reason: str, *, release_now: bool = False) -> None:
        """After an error the list may hold a message nobody will record: leave it to the
        sweeps and use a new list. The sweeps take it when its marker expires, or at once
        with `release_now` (only when Redis answers: a half-open connection could hang)."""
        old_alive = self.inflight_alive_key
        self._new_inflight_list()
        if release_now:
            try:
                with self.conn_or_acquire() as client:
                    client.delete(old_alive)
            except (redis.RedisError, OSError):
                pass  # the marker expires on its own
        log.warning("inflight_list_abandoned", reason=reason)

    def restore_inflight(self, client: redis.Redis[bytes], key: str) -> int:
        """Move everything in list `key` back to its queue and unregister it; atomic, so two
        sweeps never restore one message twice."""
        counts = {"restored": 0, "undecodable": 0}

        def move_back(pipe: Any) -> None:
            raw_items = pipe.lrange(key, 0, -1)
            pipe.multi()
            counts.update(restored=0, undecodable=0)  # a WATCH retry counts afresh
            for raw in reversed(raw_items):  # oldest first, as they left the queue
                payload = decode(raw)
                if payload is None:
                    pipe.rpush(UNDECODABLE, raw)
                    counts["undecodable"] += 1
                    continue
                info = payload["properties"]["delivery_info"]
                self._do_restore_message(payload, info["exchange"], info["routing_key"], pipe)
                counts["restored"] += 1
            pipe.delete(key)
            pipe.hdel(INFLIGHT_REGISTRY, key)

        client.transaction(move_back, key)
        if counts["restored"] or counts["undecodable"]:
            log.warning("inflight_restored", list=key, **counts)
        return counts["restored"]

    # -- consuming -------------------------------------------------------------------------

    def _single_source(self) -> str | None:
        queues = self._queue_cycle.consume(len(self.active_queues))
        keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
        if len(keys) == 1 and not self.global_keyprefix and self._supports_blmove():
            return str(keys[0])
        if keys and not self._warned_multi:
            self._warned_multi = True
            log.warning(
                "inflight_unavailable",
                lists=len(keys),
                prefixed=bool(self.global_keyprefix),
                blmove=self._server_moves,
            )
        return None

    def _supports_blmove(self) -> bool:
        if self._server_moves is None:
            with self.conn_or_acquire() as client:
                version = str(client.info("server").get("redis_version", "0"))
            self._server_moves = tuple(int(p) for p in version.split(".")[:2]) >= (6, 2)
        return self._server_moves

    def _brpop_start(self, timeout: float | None = None) -> None:
        source = self._single_source()
        if source is None:
            self._moving_from = None
            super()._brpop_start(timeout)
            return
        if self._due_for_beat():
            with self.conn_or_acquire() as client:
                self.register_inflight(client)
        wait = self.brpop_timeout if timeout is None else timeout
        # kombu declares both as None at class level; it assigns them the same way.
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]
        self._moving_from = source
        self.client.connection.send_command(
            "BLMOVE", source, self.inflight_key, "RIGHT", "LEFT", wait or 0
        )

    def _brpop_read(self, **options: Any) -> Any:
        source, self._moving_from = self._moving_from, None
        if source is None:
            return super()._brpop_read(**options)
        try:
            try:
                raw = self.client.parse_response(self.client.connection, "BLMOVE", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                self._give_up_inflight_list("connection lost while moving a message")
                raise
            if not raw:
                raise Empty()
            self._queue_cycle.rotate(source)
            payload, reason = _decoded(raw)
            if payload is None:
                self._set_aside(raw, reason=reason or "undecodable")
                raise Empty()
            self._handover = raw
            self.recorded_tag = None
            try:
                # Records the message as unacked (QoS.append, which also takes it out of the
                # in-flight list), or requeues it, before it returns.
                self.connection._deliver(payload, source)
            except Exception as exc:
                tag, self.recorded_tag = self.recorded_tag, None
                if tag is not None and not _broker_failure(exc, self.connection_errors):
                    # Recorded, then Celery choked on it (headers without an id, a body that
                    # is no argument list): redelivered, it would kill or stall every worker.
                    self.qos.set_aside(tag, reason=type(exc).__name__)
                    virtual.QoS.ack(self.qos, tag)
                    raise Empty() from exc
                if self.take_handover() is None:  # recorded, or the record failed: kombu's
                    refused = not isinstance(exc, self.connection_errors)  # Redis answered
                    self._give_up_inflight_list("unacked record not written", release_now=refused)
                    raise
                # kombu could not even build the message (no delivery_tag, a body it cannot
                # decode): redelivering it would fail the same way, forever.
                self._set_aside(raw, reason=type(exc).__name__)
                raise Empty() from exc
            if self.take_handover() is not None:
                self._settle(raw)  # a no-ack consumer: nothing recorded it
            return True
        finally:
            self._handover = None
            self.recorded_tag = None
            self._in_poll = None  # type: ignore[assignment]
            self._flush_brpop_reauth()

    def _on_connection_disconnect(self, connection: Any) -> None:
        # kombu drops a connection whose reply is overdue (half-open) without reading it: a
        # message the server had moved sits in our list, which we would keep alive forever.
        if connection is self._in_poll and self._moving_from is not None:
            self._moving_from = None
            self._give_up_inflight_list("connection dropped with a move pending")
        super()._on_connection_disconnect(connection)

    def take_handover(self) -> bytes | None:
        """The raw message being delivered, for QoS.append to remove from the list; once."""
        raw, self._handover = self._handover, None
        return raw

    def _set_aside(self, raw: bytes, reason: str) -> None:
        try:
            with self.conn_or_acquire() as client, client.pipeline() as pipe:
                pipe.lrem(self.inflight_key, 1, raw)
                pipe.rpush(UNDECODABLE, raw)
                pipe.execute()
        except (redis.RedisError, OSError):
            self._give_up_inflight_list("undeliverable message not set aside")
            raise
        report_set_aside(reason, len(raw))

    def _settle(self, raw: bytes) -> None:
        """Nothing recorded the message (no-ack consumer): drop it from the in-flight list."""
        try:
            with self.conn_or_acquire() as client:
                client.lrem(self.inflight_key, 1, raw)
        except (redis.RedisError, OSError):
            # Recorded twice: delivered again later, and the Decision dedupe keeps one.
            self._give_up_inflight_list("in-flight entry not removed")

    def close(self) -> None:
        # Best effort only: whatever stays in the in-flight list is restored by the sweeps
        # once its marker expires, so no error here may stop kombu's own close below (a
        # channel left half-closed is closed again later, on a detached transport).
        try:
            if self._in_poll and self._moving_from is not None:
                with contextlib.suppress(Empty):
                    self._brpop_read()
            if not self.closed and self._inflight_registered:
                with self.conn_or_acquire() as client:
                    self.restore_inflight(client, self.inflight_key)
                    client.delete(self.inflight_alive_key)
        except Exception as exc:  # noqa: BLE001 - see above
            log.info("inflight_left_to_sweeps", list=self.inflight_key, error=type(exc).__name__)
        finally:
            self._peers.discard(self)
            super().close()


class Transport(kombu_redis.Transport):
    Channel = Channel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inflight_channels: weakref.WeakSet[Channel] = weakref.WeakSet()

    def beat_inflight(self, client: redis.Redis[bytes]) -> None:
        """Keep alive the in-flight lists of every open channel of this connection."""
        for channel in list(self.inflight_channels):  # a copy: channels close meanwhile
            if channel._inflight_registered and not channel.closed:
                channel.register_inflight(client)


def _broker_failure(exc: Exception, connection_errors: tuple[type[Exception], ...]) -> bool:
    # kombu counts KeyError among the Redis transport's connection errors; from a delivery
    # it means a message without a header Celery needs, not a lost connection.
    return isinstance(exc, connection_errors) and not isinstance(exc, KeyError)


def decode(raw: bytes) -> dict[str, Any] | None:
    """A kombu message as the Redis transport stores it, or None if it is not one."""
    return _decoded(raw)[0]


def undeliverable_reason(raw: bytes) -> str | None:
    """Why the message cannot be delivered, or None if a worker can take it."""
    return _decoded(raw)[1]


def _decoded(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    # Whatever is in Redis: a foreign producer's bytes, or anyone's who can write there.
    # Nothing about them may raise past this function (a sweep or a start-up would die).
    try:
        envelope = _json(raw, ENVELOPE_MAX_DEPTH)
    except _Undecodable as exc:
        return None, f"envelope: {exc}"
    reason = _envelope_problem(envelope)
    return (None, reason) if reason is not None else (envelope, None)


def unacked_record(raw: bytes) -> tuple[dict[str, Any], str, str] | None:
    """kombu's unacked record (message, exchange, routing key), or None if it is not one."""
    try:
        record = _json(raw, ENVELOPE_MAX_DEPTH + 1)
    except _Undecodable:
        return None
    if not (isinstance(record, list) and len(record) == 3):
        return None
    message, exchange, routing_key = record
    if not (isinstance(exchange, str) and isinstance(routing_key, str)):
        return None
    if _envelope_problem(message) is not None:
        return None
    return message, exchange, routing_key


def _envelope_problem(envelope: Any) -> str | None:
    if not isinstance(envelope, dict) or not isinstance(envelope.get("properties"), dict):
        return "not a kombu message (no properties)"
    info = envelope["properties"].get("delivery_info")
    if not isinstance(info, dict) or not isinstance(envelope.get("headers", {}), dict):
        return "not a kombu message (no delivery_info or headers)"
    if not all(isinstance(info.get(k), str) for k in ("exchange", "routing_key")):
        return "no exchange or routing key"  # restoring needs both (kombu drops it)
    return _body_problem(envelope)


#: Nesting a kombu envelope has (headers, properties, delivery info) with room to spare.
ENVELOPE_MAX_DEPTH = 32
#: Nesting a task body may have. kombu and Celery decode it again deeper in the stack, where
#: Python's recursion limit (1,000 frames) is nearer; an item nested past the input edge's
#: own limit still arrives and becomes an invalid_input Decision.
BODY_MAX_DEPTH = 200


class _Undecodable(Exception):
    pass


def _json(data: bytes | str, max_depth: int) -> Any:
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise _Undecodable(f"nested deeper than {max_depth} levels") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise _Undecodable("not JSON") from exc
    if nesting_exceeds(value, max_depth):
        raise _Undecodable(f"nested deeper than {max_depth} levels")
    return value


def _body_problem(envelope: dict[str, Any]) -> str | None:
    """Why Celery could not decode the body (it would log CRITICAL and drop it), or None."""
    body = envelope.get("body")
    if envelope.get("content-type") != "application/json":
        return "body is not application/json"
    if envelope.get("content-encoding", "utf-8") != "utf-8":
        return "body is not utf-8"
    if not isinstance(body, str):
        return "body is not a string"
    data: bytes | str = body
    if envelope["properties"].get("body_encoding") == "base64":
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            return "body is not base64"
    try:
        decoded = _json(data, BODY_MAX_DEPTH)
    except _Undecodable as exc:
        return f"body: {exc}"
    return _task_problem(envelope.get("headers", {}), decoded)


def _task_problem(headers: dict[str, Any], body: Any) -> str | None:
    """Why Celery could not run the message as a task, or None.

    A task with no id or a body that is no argument list stops or kills the worker that
    takes it; one whose keyword arguments are no mapping is acked away as failed. A message
    that claims no task at all is left to Celery, which refuses it (and the refusal sets it
    aside, see `QoS.reject`).
    """
    if "task" in headers:  # protocol 2: ids in the headers, (args, kwargs, embed) as body
        ids = headers
        if not (isinstance(body, list) and len(body) == 3):
            return "task body is not [args, kwargs, embed]"
        args, kwargs, embed = body
        if not isinstance(embed, dict | None):
            return "task embed is not an object"
    elif isinstance(body, dict) and "task" in body:  # protocol 1: everything in the body
        ids = body
        args, kwargs = body.get("args", []), body.get("kwargs", {})
    else:
        return None
    if not (isinstance(ids["task"], str) and isinstance(ids.get("id"), str)):
        return "task name or id is not a string"
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return "task args are not a list or kwargs not an object"
    return None
