"""The review queue against a real Redis: order, claims, leases, single resolutions, labels."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.fixtures_workers import make_decision, make_item
from workers.review_queue import (
    AlreadyResolvedError,
    Label,
    LeaseLostError,
    ReviewQueue,
    UnknownItemError,
)

pytest_plugins = ["tests.fixtures_workers"]


@pytest.fixture
def queue(redis_client: redis.Redis, namespace: str) -> ReviewQueue:
    return ReviewQueue(redis_client, namespace, lease_s=30)


def put(queue: ReviewQueue, item_id: str, priority: int = 50) -> str:
    decision = make_decision(item_id, priority=priority)
    assert queue.enqueue(decision, make_item(item_id, f"text of {item_id}"))
    return decision.key


class TestOrder:
    def test_higher_priority_first_then_oldest(self, queue: ReviewQueue) -> None:
        """Claims come in priority order, and first come first served within a priority."""
        put(queue, "low", 10)
        put(queue, "high-1", 90)
        put(queue, "mid", 50)
        put(queue, "high-2", 90)
        order = [c.entry.item.id for _ in range(4) if (c := queue.claim("r1")) is not None]
        assert order == ["high-1", "high-2", "mid", "low"]
        assert queue.claim("r1") is None

    def test_pending_lists_in_claim_order(self, queue: ReviewQueue) -> None:
        """pending() shows what claim() would hand out next, without taking it."""
        put(queue, "a", 10)
        put(queue, "b", 80)
        assert [e.item.id for e in queue.pending()] == ["b", "a"]
        assert queue.size().queued == 2

    def test_enqueue_once_per_key(self, queue: ReviewQueue) -> None:
        """The same Decision key queued twice is one entry."""
        put(queue, "dup")
        assert not queue.enqueue(make_decision("dup"), make_item("dup"))
        assert queue.size().queued == 1

    def test_entry_carries_decision_and_content(self, queue: ReviewQueue) -> None:
        """A reviewer sees the content itself, not only the Decision."""
        key = put(queue, "x", 70)
        entry = queue.get(key)
        assert entry is not None
        assert entry.item.text == "text of x"
        assert entry.decision.review_priority == 70
        assert entry.state == "queued"


class TestClaims:
    def test_claim_gives_token_and_lease(self, queue: ReviewQueue) -> None:
        """A claim returns the entry, a lease token and when the lease ends."""
        key = put(queue, "a")
        claim = queue.claim("alice", lease_s=60)
        assert claim is not None
        assert claim.entry.key == key
        assert claim.entry.state == "claimed"
        assert claim.entry.reviewer == "alice"
        assert len(claim.token) >= 16
        assert 55 < (claim.expires_at.timestamp() - time.time()) <= 61
        assert queue.size().model_dump() == {"queued": 0, "claimed": 1}

    def test_claim_named_entry(self, queue: ReviewQueue) -> None:
        """A reviewer can pick a specific entry from the list; taken ones cannot be picked."""
        put(queue, "a", 90)
        key_b = put(queue, "b", 10)
        claim = queue.claim("r", key=key_b)
        assert claim is not None
        assert claim.entry.item.id == "b"
        assert queue.claim("r2", key=key_b) is None

    def test_concurrent_claims_never_share(self, queue: ReviewQueue) -> None:
        """Many reviewers claiming at once each get distinct entries, every entry once."""
        for i in range(40):
            put(queue, f"i{i}")
        got: list[str] = []
        lock = threading.Lock()

        def reviewer(name: str) -> None:
            while (claim := queue.claim(name)) is not None:
                with lock:
                    got.append(claim.entry.key)

        threads = [threading.Thread(target=reviewer, args=(f"r{n}",)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 40
        assert len(set(got)) == 40

    def test_expired_lease_returns_entry_to_its_place(self, queue: ReviewQueue) -> None:
        """When a lease runs out the entry is claimable again, ahead of later arrivals."""
        key = put(queue, "first", 50)
        claim = queue.claim("slow", lease_s=1)
        assert claim is not None
        put(queue, "later", 50)
        time.sleep(1.1)
        again = queue.claim("fast")
        assert again is not None
        assert again.entry.key == key
        assert again.entry.claims == 2
        with pytest.raises(LeaseLostError):
            queue.resolve(key, claim.token, violation=False, rule_ids=[])

    def test_extend_keeps_the_lease(self, queue: ReviewQueue) -> None:
        """Extending a live lease moves its end; an expired one cannot be extended."""
        key = put(queue, "a")
        claim = queue.claim("r", lease_s=1)
        assert claim is not None
        new_end = queue.extend(key, claim.token, lease_s=60)
        assert new_end > claim.expires_at
        time.sleep(1.1)
        assert queue.claim("other") is None
        with pytest.raises(LeaseLostError):
            queue.extend(key, "wrong-token")

    def test_release_puts_back(self, queue: ReviewQueue) -> None:
        """A released entry is queued again and the old token is dead."""
        key = put(queue, "a")
        claim = queue.claim("r")
        assert claim is not None
        queue.release(key, claim.token)
        assert queue.size().queued == 1
        with pytest.raises(LeaseLostError):
            queue.resolve(key, claim.token, violation=False, rule_ids=[])

    def test_claim_needs_reviewer(self, queue: ReviewQueue) -> None:
        """An anonymous claim is refused: every resolution names who made it."""
        with pytest.raises(ValueError, match="reviewer"):
            queue.claim("")


class TestResolutions:
    def test_resolve_records_who_and_when(self, queue: ReviewQueue) -> None:
        """A resolution carries the lease holder, the label and the server time."""
        key = put(queue, "a")
        claim = queue.claim("alice")
        assert claim is not None
        before = time.time()
        res = queue.resolve(
            key, claim.token, violation=True, rule_ids=["HARASSMENT.2"], note="slur"
        )
        assert res.reviewer == "alice"
        assert res.violation is True
        assert res.rule_ids == ["HARASSMENT.2"]
        assert abs(res.resolved_at.timestamp() - before) < 5
        entry = queue.get(key)
        assert entry is not None
        assert entry.state == "resolved"
        assert entry.resolution == res
        assert queue.size().model_dump() == {"queued": 0, "claimed": 0}

    def test_resolved_once(self, queue: ReviewQueue) -> None:
        """A second resolution of the same entry is refused; the first stands."""
        key = put(queue, "a")
        claim = queue.claim("alice")
        assert claim is not None
        queue.resolve(key, claim.token, violation=False, rule_ids=[])
        with pytest.raises(AlreadyResolvedError):
            queue.resolve(key, claim.token, violation=True, rule_ids=["X.1"])
        assert queue.claim("bob", key=key) is None

    def test_only_the_lease_holder_resolves(self, queue: ReviewQueue) -> None:
        """A wrong token (someone else's, or made up) cannot resolve."""
        key = put(queue, "a")
        assert queue.claim("alice") is not None
        with pytest.raises(LeaseLostError):
            queue.resolve(key, "not-the-token", violation=False, rule_ids=[])

    def test_unknown_key(self, queue: ReviewQueue) -> None:
        """Resolving something never queued says so."""
        with pytest.raises(UnknownItemError):
            queue.resolve("nope", "t", violation=False, rule_ids=[])

    def test_violation_names_a_rule(self) -> None:
        """A 'yes, violation' label without a rule id is useless for calibration."""
        with pytest.raises(ValueError, match="rule id"):
            Label(violation=True, rule_ids=[])

    def test_labelled_data_in_resolution_order(self, queue: ReviewQueue) -> None:
        """Resolutions come back with their Decisions and content, resumable by stream id."""
        keys = [put(queue, f"i{n}", 90 - n) for n in range(3)]
        for n, key in enumerate(keys):
            claim = queue.claim(f"r{n}")
            assert claim is not None
            queue.resolve(
                key, claim.token, violation=n % 2 == 0, rule_ids=["R.1"] if n % 2 == 0 else []
            )
        examples = list(queue.labelled())
        assert [e.key for e in examples] == keys
        assert [e.resolution.violation for e in examples] == [True, False, True]
        assert examples[1].decision.item_id == "i1"
        assert examples[1].item.text == "text of i1"
        assert [e.resolution.reviewer for e in examples] == ["r0", "r1", "r2"]


class TestSecondReviewAndEscalation:
    def test_second_review_skips_its_first_reviewer(self, queue: ReviewQueue) -> None:
        """A second review waits for someone else: its first reviewer gets the next entry."""
        first = put(queue, "a", 90)
        put(queue, "b", 10)
        claim = queue.claim("r1")
        assert claim is not None
        queue.resolve(first, claim.token, violation=False, rule_ids=[], second_review=True)
        mine = queue.claim("r1")
        assert mine is not None
        assert mine.entry.item.id == "b"
        theirs = queue.claim("r2")
        assert theirs is not None
        assert theirs.entry.second_of == first
        assert queue.claim("r1", key=theirs.entry.key) is None

    def test_second_review_is_not_reviewed_a_third_time(self, queue: ReviewQueue) -> None:
        """Asking a second review for a second review queues nothing more."""
        key = put(queue, "a")
        claim = queue.claim("r1")
        assert claim is not None
        queue.resolve(key, claim.token, violation=False, rule_ids=[], second_review=True)
        second = queue.claim("r2")
        assert second is not None
        queue.resolve(
            second.entry.key, second.token, violation=False, rule_ids=[], second_review=True
        )
        assert queue.size().queued == 0

    def test_escalation_goes_to_the_top(self, queue: ReviewQueue) -> None:
        """An escalated entry is queued first, keeps its history, and is on the audit stream."""
        put(queue, "urgent", 90)
        key = put(queue, "low", 10)
        claim = queue.claim("r1", key=key)
        assert claim is not None
        queue.escalate(key, claim.token, note="legal")
        nxt = queue.claim("r2")
        assert nxt is not None
        assert (nxt.entry.item.id, nxt.entry.priority, nxt.entry.escalated_by) == ("low", 100, "r1")
        assert [e.note for e in queue.escalations()] == ["legal"]


class TestBands:
    def test_depth_and_oldest_per_priority(self, queue: ReviewQueue) -> None:
        """bands() counts queued entries per priority, most urgent first, with the oldest wait."""
        put(queue, "a", 10)
        put(queue, "b", 80)
        time.sleep(0.01)
        put(queue, "c", 80)
        bands = queue.bands()
        assert [(b.priority, b.queued) for b in bands] == [(80, 2), (10, 1)]
        b = queue.get(make_decision("b", priority=80).key)
        assert b is not None
        assert bands[0].oldest_enqueued_at == b.enqueued_at
