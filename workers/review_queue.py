"""The human review queue in Redis: priority order, claims with leases, resolutions once.

Items routed to `human_review`, and items the pipeline failed on (`error`), wait here for a
person. This module is the storage and Python API that a review UI puts a face on.

    {ns}:review:queue          sorted set: decision key -> order (priority desc, then oldest)
    {ns}:review:leases         sorted set: decision key -> lease expiry (ms, Redis clock)
    {ns}:review:entry:{key}    hash: decision, item, priority, state, lease, resolution
    {ns}:review:labels         stream: every resolution with its decision and item
    {ns}:review:audit          stream: escalations (resolutions are on the labels stream)

Dual review: a resolution may ask for a second, independent one. The same Decision and item
are queued again under `{key}#2`, excluded for the first reviewer, so agreement between two
people can be measured (`workers.review_web.agreement`).

Every state change is one Lua script, so two reviewers can never claim the same item and a
resolution is written at most once. Times come from the Redis server clock (`TIME`), so
reviewers and workers on machines with skewed clocks agree on when a lease ran out. Expired
leases go back to the queue lazily, whenever the queue is claimed from, listed or counted:
there is no sweeper process to run or to die.

Keys derived inside the scripts (the entry hash) make this single-instance (or Sentinel)
Redis only, like Celery's Redis broker itself.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import redis
import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import QuoteguardError
from pipeline.models import ContentItem, Decision
from workers.review_scripts import (
    CHECK_LEASE,
    CLAIM,
    ENQUEUE,
    ESCALATE,
    EXTEND,
    LUA_LIB,
    RELEASE,
    RESOLVE,
    SWEEP,
)

if TYPE_CHECKING:
    from redis.commands.core import Script

log = structlog.get_logger("quoteguard.workers")

#: Outcomes that wait for a person.
REVIEW_OUTCOMES = frozenset({"human_review", "error"})
#: Appended to a Decision key for its second, independent review.
SECOND_REVIEW = "#2"
#: Queued entries a claim looks through for one its reviewer may take (a second review is
#: never given to the first reviewer); a reviewer facing more of their own is told "none".
CLAIM_SCAN = 200
#: Where an escalated entry goes: the top of the queue.
ESCALATION_PRIORITY = 100


class ReviewError(QuoteguardError):
    """A review operation that the queue's state does not allow."""

    kind = "review_error"


class UnknownItemError(ReviewError):
    kind = "unknown_item"


class LeaseLostError(ReviewError):
    """The claim is not (or no longer) held with this token; claim the item again."""

    kind = "lease_lost"


class AlreadyResolvedError(ReviewError):
    """A resolution is recorded once; the first one stands."""

    kind = "already_resolved"


_ERRORS: dict[str, type[ReviewError]] = {
    "unknown_item": UnknownItemError,
    "not_claimed": LeaseLostError,
    "lease_expired": LeaseLostError,
    "already_resolved": AlreadyResolvedError,
}


def _ms_to_dt(ms: str | int | float) -> datetime:
    return datetime.fromtimestamp(int(float(ms)) / 1000, tz=UTC)


class ReviewEntry(BaseModel):
    """One item waiting for (or taken by, or resolved by) a person."""

    model_config = ConfigDict(frozen=True)

    key: str
    decision: Decision
    item: ContentItem
    priority: int
    state: Literal["queued", "claimed", "resolved"]
    enqueued_at: datetime
    claims: int = Field(description="How often it was claimed; >1 means a lease ran out.")
    reviewer: str | None = None
    lease_expires: datetime | None = None
    resolution: Resolution | None = None
    escalated_by: str | None = None
    escalation_note: str = ""
    second_of: str | None = Field(
        default=None, description="For a second review: the key of the first one."
    )

    @classmethod
    def from_hash(cls, fields: dict[str, str]) -> ReviewEntry:
        return cls(
            key=fields["key"],
            decision=Decision.model_validate_json(fields["decision"]),
            item=ContentItem.model_validate_json(fields["item"]),
            priority=int(fields["priority"]),
            state=fields["state"],
            enqueued_at=_ms_to_dt(fields["enqueued_at"]),
            claims=int(fields.get("claims", 0)),
            reviewer=fields.get("reviewer") or fields.get("resolved_by"),
            lease_expires=_ms_to_dt(fields["lease_expires"]) if "lease_expires" in fields else None,
            resolution=Resolution.from_stored(
                fields["resolution"], fields["resolved_by"], fields["resolved_at"]
            )
            if "resolution" in fields
            else None,
            escalated_by=fields.get("escalated_by"),
            escalation_note=fields.get("escalation_note", ""),
            second_of=fields.get("second_of"),
        )


class Label(BaseModel):
    """What the reviewer decided: the human label a calibration profile is fitted on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    violation: bool
    rule_ids: list[str] = Field(default_factory=list, description="Rules the content breaks.")
    note: str = ""

    @property
    def answer(self) -> str:
        """What two labels must share to agree: no violation, or the same set of rules."""
        return ",".join(sorted(set(self.rule_ids))) if self.violation else "no violation"

    @model_validator(mode="after")
    def _rules_name_the_violation(self) -> Label:
        if self.violation and not self.rule_ids:
            msg = "a violation must name at least one rule id"
            raise ValueError(msg)
        return self


class Resolution(Label):
    """A label with who gave it and when (Redis server time)."""

    reviewer: str
    resolved_at: datetime

    @classmethod
    def from_stored(cls, label: str, reviewer: str, resolved_at: str) -> Resolution:
        return cls(**json.loads(label), reviewer=reviewer, resolved_at=_ms_to_dt(resolved_at))


class Claim(BaseModel):
    """A reviewer's hold on one entry; `token` must accompany extend/release/resolve."""

    model_config = ConfigDict(frozen=True)

    entry: ReviewEntry
    token: str
    expires_at: datetime


class LabelledExample(BaseModel):
    """A resolution with the Decision and item it judged, for calibration and audits."""

    model_config = ConfigDict(frozen=True)

    stream_id: str = Field(description="Pass as `after` to resume an export here.")
    key: str
    resolution: Resolution
    decision: Decision
    item: ContentItem


class QueueSize(BaseModel):
    queued: int
    claimed: int


class PriorityBand(BaseModel):
    """The queued entries of one priority: how many, and since when the oldest waits."""

    priority: int
    queued: int
    oldest_enqueued_at: datetime


class Escalation(BaseModel):
    """A reviewer handed an entry back for someone more senior, with why."""

    model_config = ConfigDict(frozen=True)

    stream_id: str
    key: str
    reviewer: str
    at: datetime
    note: str


ReviewEntry.model_rebuild()


class ReviewQueue:
    """Review storage for one namespace; safe to share between threads."""

    def __init__(self, client: redis.Redis[str], namespace: str, *, lease_s: int = 900) -> None:
        self.redis = client
        self.lease_s = lease_s
        self.queue_key = f"{namespace}:review:queue"
        self.leases_key = f"{namespace}:review:leases"
        self.labels_key = f"{namespace}:review:labels"
        self.audit_key = f"{namespace}:review:audit"
        self.entry_prefix = f"{namespace}:review:entry:"
        self._claim = client.register_script(LUA_LIB + CLAIM)
        self._extend = client.register_script(LUA_LIB + CHECK_LEASE + EXTEND)
        self._release = client.register_script(LUA_LIB + CHECK_LEASE + RELEASE)
        self._resolve = client.register_script(LUA_LIB + CHECK_LEASE + RESOLVE)
        self._escalate = client.register_script(LUA_LIB + CHECK_LEASE + ESCALATE)
        self._enqueue = client.register_script(LUA_LIB + ENQUEUE)
        self._sweep = client.register_script(LUA_LIB + SWEEP)

    @property
    def _keys(self) -> list[str]:
        return [self.queue_key, self.leases_key, self.labels_key, self.audit_key]

    def entry_key(self, key: str) -> str:
        return self.entry_prefix + key

    # -- producers -------------------------------------------------------------------------

    def enqueue(self, decision: Decision, item: ContentItem) -> bool:
        """Queue a Decision for review; False if this key was queued before (once per key).

        Workers do this inside the publish script instead (`workers.results`), so that a
        Decision is on the stream and in the queue together or not at all.
        """
        added = self._enqueue(
            keys=[*self._keys, self.entry_key(decision.key)],
            args=[
                self.entry_prefix,
                decision.key,
                decision.model_dump_json(),
                item.model_dump_json(),
                decision.review_priority,
            ],
        )
        return bool(added)

    # -- reviewers -------------------------------------------------------------------------

    def claim(
        self, reviewer: str, *, key: str | None = None, lease_s: int | None = None
    ) -> Claim | None:
        """Take the most urgent entry (or the named one) for `lease_s`; None if none is free."""
        if not reviewer:
            msg = "a claim needs a reviewer id"
            raise ValueError(msg)
        token = secrets.token_urlsafe(16)
        raw = self._claim(
            keys=self._keys,
            args=[
                self.entry_prefix,
                reviewer,
                token,
                (lease_s or self.lease_s) * 1000,
                key or "",
                CLAIM_SCAN,
            ],
        )
        if not raw:
            return None
        entry = ReviewEntry.from_hash(_pairs(raw))
        assert entry.lease_expires is not None  # noqa: S101 - set by the claim script
        log.info("review_claimed", key=entry.key, reviewer=reviewer, claims=entry.claims)
        return Claim(entry=entry, token=token, expires_at=entry.lease_expires)

    def extend(self, key: str, token: str, *, lease_s: int | None = None) -> datetime:
        """Renew a lease still held; raises LeaseLostError once it has run out."""
        expires = self._run(self._extend, key, token, (lease_s or self.lease_s) * 1000)
        return _ms_to_dt(str(expires))

    def release(self, key: str, token: str) -> None:
        """Give the entry back unresolved, in its original place in the queue."""
        self._run(self._release, key, token)
        log.info("review_released", key=key)

    def resolve(
        self,
        key: str,
        token: str,
        *,
        violation: bool,
        rule_ids: list[str],
        note: str = "",
        second_review: bool = False,
    ) -> Resolution:
        """Record the reviewer's label once, stamped with who held the lease and when.

        `second_review` queues the same item for an independent review by someone else
        (ignored for an entry that is itself a second review).
        """
        label = Label(violation=violation, rule_ids=rule_ids, note=note)
        second = key + SECOND_REVIEW if second_review and not is_second_review(key) else ""
        reply = self._run(self._resolve, key, token, label.model_dump_json(), second)
        reviewer, resolved_at = (_text(v) for v in reply)
        resolution = Resolution(
            **label.model_dump(), reviewer=reviewer, resolved_at=_ms_to_dt(resolved_at)
        )
        log.info("review_resolved", key=key, reviewer=resolution.reviewer, violation=violation)
        return resolution

    def escalate(self, key: str, token: str, *, note: str = "") -> None:
        """Hand the entry back at the top of the queue, marked escalated with the note."""
        self._run(self._escalate, key, token, note, ESCALATION_PRIORITY)
        log.info("review_escalated", key=key)

    # -- reading ---------------------------------------------------------------------------

    def get(self, key: str) -> ReviewEntry | None:
        fields = self.redis.hgetall(self.entry_key(key))
        return ReviewEntry.from_hash(_decoded(fields)) if fields else None

    def pending(self, limit: int = 50, offset: int = 0) -> list[ReviewEntry]:
        """Queued entries in the order they will be claimed."""
        self.requeue_expired()
        keys = self.redis.zrange(self.queue_key, offset, offset + limit - 1)
        return [e for k in keys if (e := self.get(_text(k))) is not None]

    def claimed(self) -> list[ReviewEntry]:
        self.requeue_expired()
        keys = self.redis.zrange(self.leases_key, 0, -1)
        return [e for k in keys if (e := self.get(_text(k))) is not None]

    def size(self) -> QueueSize:
        self.requeue_expired()
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.queue_key)
            pipe.zcard(self.leases_key)
            queued, claimed = pipe.execute()
        return QueueSize(queued=queued, claimed=claimed)

    def bands(self) -> list[PriorityBand]:
        """Queued entries per priority, most urgent first, each with its oldest wait."""
        self.requeue_expired()
        # The score is (100 - priority) * 1e13 + enqueued ms: a band is a score range.
        ranges = [((100 - p) * 10**13, (101 - p) * 10**13 - 1) for p in range(100, -1, -1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for low, high in ranges:
                pipe.zcount(self.queue_key, low, high)
            counts = pipe.execute()
        bands = []
        for (low, high), count in zip(ranges, counts, strict=True):
            if count:
                oldest = self.redis.zrangebyscore(self.queue_key, low, high, 0, 1, withscores=True)
                enqueued = int(oldest[0][1]) - low
                bands.append(
                    PriorityBand(
                        priority=100 - low // 10**13,
                        queued=count,
                        oldest_enqueued_at=_ms_to_dt(enqueued),
                    )
                )
        return bands

    def now(self) -> datetime:
        """The Redis server's clock, which leases and waits are measured by."""
        seconds, micros = self.redis.time()
        return datetime.fromtimestamp(seconds + micros / 1e6, tz=UTC)

    def escalations(self, count: int = 200) -> list[Escalation]:
        """The most recent escalations, newest first."""
        return [
            Escalation(
                stream_id=_text(entry_id),
                key=(f := _decoded(fields))["key"],
                reviewer=f["reviewer"],
                at=_ms_to_dt(f["at"]),
                note=f.get("note", ""),
            )
            for entry_id, fields in self.redis.xrevrange(self.audit_key, count=count)
        ]

    def requeue_expired(self) -> int:
        """Return entries whose lease ran out to the queue; the count of expired leases."""
        return int(self._sweep(keys=self._keys, args=[self.entry_prefix]))

    def labelled(self, after: str = "-", count: int | None = None) -> Iterator[LabelledExample]:
        """Resolutions in the order they were made, with their Decisions: labelled data.

        `after` is a stream id to resume from (exclusive), so an export can be incremental.
        """
        start = after if after == "-" else f"({after}"
        while True:
            batch = self.redis.xrange(self.labels_key, start, "+", count=count or 500)
            for entry_id, fields in batch:
                yield _labelled(entry_id, fields)
                start = f"({_text(entry_id)}"
            if count is not None or not batch:
                return

    def recent(self, count: int = 100) -> list[LabelledExample]:
        """The latest resolutions, newest first (the audit trail's first page)."""
        return [_labelled(i, f) for i, f in self.redis.xrevrange(self.labels_key, count=count)]

    def _run(self, script: Script, key: str, *args: str | int) -> Any:
        try:
            return script(keys=self._keys, args=[self.entry_prefix, key, *args])
        except redis.ResponseError as exc:
            error = _ERRORS.get(str(exc))
            if error is None:
                raise
            raise error(f"{key}: {exc}") from exc


def _labelled(
    entry_id: bytes | str, fields: dict[bytes, bytes] | dict[str, str]
) -> LabelledExample:
    f = _decoded(fields)
    return LabelledExample(
        stream_id=_text(entry_id),
        key=f["key"],
        resolution=Resolution.from_stored(f["label"], f["reviewer"], f["resolved_at"]),
        decision=Decision.model_validate_json(f["decision"]),
        item=ContentItem.model_validate_json(f["item"]),
    )


def is_second_review(key: str) -> bool:
    return key.endswith(SECOND_REVIEW)


def first_review_key(key: str) -> str:
    """The Decision key a (first or second) review entry belongs to."""
    return key.removesuffix(SECOND_REVIEW)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(fields: dict[bytes, bytes] | dict[str, str]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def _pairs(flat: list[bytes] | list[str]) -> dict[str, str]:
    items = [_text(v) for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))
