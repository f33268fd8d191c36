"""Publishing Decisions against a real Redis: once per key, stream order, review routing."""

from __future__ import annotations

import threading

import pytest
import redis

from tests.fixtures_workers import make_decision, make_item
from workers.results import Results

pytest_plugins = ["tests.fixtures_workers"]


@pytest.fixture
def results(redis_client: redis.Redis, namespace: str) -> Results:
    return Results(redis_client, namespace, dedupe_ttl_s=60, stream_maxlen=1000)


class TestPublish:
    def test_first_publish_creates(self, results: Results) -> None:
        """A new key goes on the stream and reports where."""
        pub = results.publish(make_decision("a", outcome="no_violation"), make_item("a"), "t1")
        assert pub.created
        assert pub.task_id == "t1"
        [entry] = results.read("0")
        assert entry.stream_id == pub.stream_id
        assert entry.decision.item_id == "a"

    def test_same_key_publishes_once(self, results: Results) -> None:
        """A redelivered item's second Decision is dropped; the first is kept and returned."""
        first = results.publish(make_decision("a", outcome="no_violation"), make_item("a"), "t1")
        again = results.publish(make_decision("a", outcome="auto_action"), make_item("a"), "t2")
        assert not again.created
        assert again.stream_id == first.stream_id
        assert again.task_id == "t1"
        assert again.outcome == "no_violation"
        assert results.length() == 1

    @pytest.mark.parametrize(
        ("policy_version", "model"), [("pv2", "sim-model"), ("pv1", "other-model")]
    )
    def test_key_includes_policy_version_and_model(
        self, results: Results, policy_version: str, model: str
    ) -> None:
        """A new policy-set version or model is a new Decision for the same item."""
        results.publish(make_decision("a"), make_item("a"))
        other = make_decision("a", policy_version=policy_version, model=model)
        assert results.publish(other, make_item("a")).created
        assert results.length() == 2

    def test_racing_publishers_make_one_decision(self, results: Results) -> None:
        """Sixteen threads publishing the same key at once: exactly one wins."""
        wins: list[bool] = []
        barrier = threading.Barrier(16)

        def go(n: int) -> None:
            barrier.wait()
            wins.append(results.publish(make_decision("x"), make_item("x"), f"t{n}").created)

        threads = [threading.Thread(target=go, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1
        assert results.length() == 1
        assert results.review.size().queued == 1

    def test_seen_knows_published_keys(self, results: Results) -> None:
        """Workers check `seen` to skip the model call for an already decided item."""
        decision = make_decision("a")
        assert results.seen(decision.key) is None
        results.publish(decision, make_item("a"), "t9")
        seen = results.seen(decision.key)
        assert seen is not None
        assert seen.task_id == "t9"

    def test_seen_tells_when_the_text_changed(self, results: Results) -> None:
        """A resubmitted id with edited text is told apart from a plain redelivery."""
        decision = make_decision("a")
        results.publish(decision, make_item("a", "first text"))
        seen = results.seen(decision.key)
        assert seen is not None
        assert not seen.decided_other_text(make_item("a", "first text"))
        assert seen.decided_other_text(make_item("a", "first text, edited"))

    def test_dedupe_record_expires(self, results: Results, redis_client: redis.Redis) -> None:
        """The resubmission window is bounded: the record carries the configured TTL."""
        decision = make_decision("a")
        results.publish(decision, make_item("a"))
        assert 0 < redis_client.ttl(results.dedupe_key(decision.key)) <= 60

    @pytest.mark.parametrize("damaged", ["not json", "[]", "5", '{"task_id": "t0"}'])
    def test_a_damaged_record_is_replaced_not_trusted(
        self, results: Results, redis_client: redis.Redis, damaged: str
    ) -> None:
        """A dedupe record no one can read (written into Redis by hand) does not lose the
        item: it counts as not seen, and publishing replaces it."""
        decision = make_decision("a", outcome="no_violation")
        redis_client.set(results.dedupe_key(decision.key), damaged)
        assert results.seen(decision.key) is None
        published = results.publish(decision, make_item("a"), "t1")
        assert published.created
        seen = results.seen(decision.key)
        assert seen is not None
        assert seen.stream_id == published.stream_id
        assert [e.decision.item_id for e in results.read("0")] == ["a"]


class TestReviewRouting:
    @pytest.mark.parametrize(
        ("outcome", "queued"),
        [
            ("human_review", True),
            ("error", True),
            ("auto_action", False),
            ("no_violation", False),
            ("suppressed", False),
        ],
    )
    def test_outcomes_that_need_a_person_are_queued(
        self, results: Results, outcome: str, queued: bool
    ) -> None:
        """human_review and error Decisions land in the review queue with their content."""
        results.publish(make_decision("a", outcome=outcome), make_item("a", "hello"))
        assert results.review.size().queued == int(queued)
        if queued:
            [entry] = results.review.pending()
            assert entry.item.text == "hello"


class TestReading:
    def test_read_resumes_after_an_id(self, results: Results) -> None:
        """Consumers resume from the last stream id they processed."""
        ids = [
            results.publish(make_decision(f"i{n}", outcome="no_violation"), make_item()).stream_id
            for n in range(5)
        ]
        rest = results.read(ids[1])
        assert [e.decision.item_id for e in rest] == ["i2", "i3", "i4"]

    def test_follow_sees_new_decisions(self, results: Results) -> None:
        """follow() from '$' yields what is published after it starts, in order."""
        results.publish(make_decision("old", outcome="no_violation"), make_item())
        stream = results.follow("$", block_ms=200)
        got: list[str] = []

        def consume() -> None:
            for entry in stream:
                got.append(entry.decision.item_id)
                if len(got) == 2:
                    return

        t = threading.Thread(target=consume)
        t.start()
        results.publish(make_decision("new1", outcome="no_violation"), make_item())
        results.publish(make_decision("new2", outcome="no_violation"), make_item())
        t.join(timeout=5)
        assert got == ["new1", "new2"]
