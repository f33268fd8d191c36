"""Decisions out: one per key, on a Redis stream, and into the review queue when needed.

    {ns}:decision:{key}    the dedupe record of a published Decision (stream id, task id)
    {ns}:decisions         stream of Decisions, for the caller's systems to consume

At-least-once delivery (acks_late, redelivery after a lost worker) and resubmitted items
mean the same item can be decided twice. `publish` makes that harmless: one Lua script
checks the dedupe record, appends to the stream, records the key and queues the Decision
for review, all or nothing, so a Decision key is on the stream exactly once. Whoever
publishes first wins; a later Decision for the same key is dropped and the first is kept.

The dedupe record expires after `dedupe_ttl_s` (the resubmission window) to bound memory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import redis
import structlog

from pipeline.models import ContentItem, Decision
from workers.review_queue import REVIEW_OUTCOMES, ReviewQueue
from workers.review_scripts import LUA_LIB

log = structlog.get_logger("quoteguard.workers")

# KEYS: dedupe record, stream, review queue, review entry
# ARGV: key, decision json, item json, priority, outcome, to review (1/0), ttl s, maxlen,
#       task id, text fingerprint
# Returns {1, record} when published, {0, record} when the key was published before.
_PUBLISH = """
local existing = redis.call('GET', KEYS[1])
if existing then
  -- A record no one can read (damaged, or written by hand) is replaced, not trusted.
  local ok, record = pcall(cjson.decode, existing)
  if ok and type(record) == 'table' and record.stream_id and record.outcome then
    return {0, existing}
  end
end
local at = now_ms()
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[8], '*',
  'key', ARGV[1], 'outcome', ARGV[5], 'decision', ARGV[2])
local record = cjson.encode({stream_id = id, task_id = ARGV[9], outcome = ARGV[5],
  text_sha = ARGV[10]})
redis.call('SET', KEYS[1], record, 'EX', ARGV[7])
if ARGV[6] == '1' then
  review_enqueue(KEYS[4], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], at)
end
return {1, record}
"""


@dataclass(frozen=True)
class Published:
    """What `publish` did: whether this call created the Decision, and where it lives."""

    created: bool
    stream_id: str
    task_id: str
    outcome: str
    text_sha: str = ""  # of the text decided; "" in records written before it was kept

    def decided_other_text(self, item: ContentItem) -> bool:
        """The Decision under this key was made for a different text than `item`'s."""
        return bool(self.text_sha) and self.text_sha != text_fingerprint(item.text)


@dataclass(frozen=True)
class StreamEntry:
    stream_id: str
    decision: Decision


class Results:
    """The Decision stream and its dedupe records for one namespace."""

    def __init__(
        self,
        client: redis.Redis[str],
        namespace: str,
        *,
        dedupe_ttl_s: int = 30 * 24 * 3600,
        stream_maxlen: int = 200_000,
    ) -> None:
        self.redis = client
        self.namespace = namespace
        self.dedupe_ttl_s = dedupe_ttl_s
        self.stream_maxlen = stream_maxlen
        self.stream_key = f"{namespace}:decisions"
        self.review = ReviewQueue(client, namespace)
        self._publish = client.register_script(LUA_LIB + _PUBLISH)

    def dedupe_key(self, key: str) -> str:
        return f"{self.namespace}:decision:{key}"

    def seen(self, key: str) -> Published | None:
        """The record of an already published Decision key, if any (skips a model call)."""
        raw = self.redis.get(self.dedupe_key(key))
        if raw is None:
            return None
        try:
            return _record(False, raw)
        except (ValueError, KeyError, TypeError):
            # Damaged (anyone who can write to Redis): deciding again beats losing the
            # item, and `publish` replaces the record.
            log.error("dedupe_record_unreadable", key=key)
            return None

    def publish(self, decision: Decision, item: ContentItem, task_id: str = "") -> Published:
        """Publish once per Decision key; human_review and error Decisions also go to review."""
        to_review = decision.outcome in REVIEW_OUTCOMES
        created, raw = self._publish(
            keys=[
                self.dedupe_key(decision.key),
                self.stream_key,
                self.review.queue_key,
                self.review.entry_key(decision.key),
            ],
            args=[
                decision.key,
                decision.model_dump_json(),
                item.model_dump_json(),
                decision.review_priority,
                decision.outcome,
                "1" if to_review else "0",
                self.dedupe_ttl_s,
                self.stream_maxlen,
                task_id,
                text_fingerprint(item.text),
            ],
        )
        published = _record(bool(created), raw)
        log.info(
            "decision_published" if published.created else "decision_duplicate",
            key=decision.key,
            outcome=published.outcome,
            stream_id=published.stream_id,
        )
        return published

    def read(
        self, after: str = "0", *, count: int = 100, block_ms: int | None = None
    ) -> list[StreamEntry]:
        """Entries after stream id `after` ("0" for the start, "$" for only new ones)."""
        reply = self.redis.xread({self.stream_key: after}, count=count, block=block_ms)
        return [
            StreamEntry(_text(entry_id), Decision.model_validate_json(_text(fields_of(raw))))
            for _stream, entries in reply or []
            for entry_id, raw in entries
        ]

    def follow(self, after: str = "$", *, block_ms: int = 5000) -> Iterator[StreamEntry]:
        """Every Decision from `after` on, waiting for new ones forever."""
        if after == "$":
            # Resolve "$" now, not at the first next(): passing "$" on every read would
            # skip what arrives between reads.
            last = self.redis.xrevrange(self.stream_key, count=1)
            after = _text(last[0][0]) if last else "0"
        return self._follow(after, block_ms)

    def _follow(self, after: str, block_ms: int) -> Iterator[StreamEntry]:
        while True:
            for entry in self.read(after, block_ms=block_ms):
                after = entry.stream_id
                yield entry

    def body(self, stream_id: str) -> str | None:
        """The published Decision JSON at `stream_id`; None once the stream was trimmed."""
        entries = self.redis.xrange(self.stream_key, stream_id, stream_id)
        return _text(fields_of(entries[0][1])) if entries else None

    def length(self) -> int:
        return int(self.redis.xlen(self.stream_key))


def fields_of(raw: dict[bytes, bytes] | dict[str, str]) -> bytes | str:
    for name, value in raw.items():
        if _text(name) == "decision":
            return value
    msg = "stream entry without a decision field"
    raise ValueError(msg)


def text_fingerprint(text: str) -> str:
    """Enough of a SHA-256 to tell two texts apart; the text itself is not kept here."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def _record(created: bool, raw: bytes | str) -> Published:
    data = json.loads(raw)
    return Published(
        created=created,
        stream_id=data["stream_id"],
        task_id=data.get("task_id", ""),
        outcome=data["outcome"],
        text_sha=data.get("text_sha", ""),
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
