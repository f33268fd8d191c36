"""The shared rate limit against a real Redis: request and token budgets, across processes."""

from __future__ import annotations

import multiprocessing
import time

import pytest
import redis

from workers.rate_limit import RateLimitWaitError, RedisRateGate
from workers.settings import RateLimit

pytest_plugins = ["tests.fixtures_workers"]

WINDOW_MS = 1000  # a one-second "minute" keeps the tests short; the logic is the same


def gate(
    client: redis.Redis, namespace: str, rpm: int | None, tpm: int | None, max_wait_s: float = 5
) -> RedisRateGate:
    limit = RateLimit(rpm=rpm, tpm=tpm)
    return RedisRateGate(
        client, namespace, lambda _model: limit, max_wait_s=max_wait_s, window_ms=WINDOW_MS
    )


class TestRequests:
    def test_requests_within_limit_do_not_wait(
        self, redis_client: redis.Redis, namespace: str
    ) -> None:
        """Up to rpm requests in a window go at once."""
        g = gate(redis_client, namespace, rpm=5, tpm=None)
        assert all(g.acquire("m", 10) == 0.0 for _ in range(5))

    def test_request_over_limit_waits_for_the_window(
        self, redis_client: redis.Redis, namespace: str
    ) -> None:
        """The next request waits until the oldest one leaves the window."""
        g = gate(redis_client, namespace, rpm=3, tpm=None)
        for _ in range(3):
            g.acquire("m", 1)
        waited = g.acquire("m", 1)
        assert 0.8 < waited < 1.3

    def test_models_have_separate_budgets(self, redis_client: redis.Redis, namespace: str) -> None:
        """One model's traffic does not consume another's limit."""
        g = gate(redis_client, namespace, rpm=2, tpm=None)
        g.acquire("a", 1)
        g.acquire("a", 1)
        assert g.acquire("b", 1) == 0.0

    def test_no_limit_touches_nothing(self, redis_client: redis.Redis, namespace: str) -> None:
        """A model without limits never waits and writes no keys."""
        g = gate(redis_client, namespace, rpm=None, tpm=None)
        assert g.acquire("m", 10**9) == 0.0
        assert list(redis_client.scan_iter(match=f"{namespace}*")) == []


class TestTokens:
    def test_tokens_are_charged(self, redis_client: redis.Redis, namespace: str) -> None:
        """Requests fit while their token costs fit; the next waits for tokens to free up."""
        g = gate(redis_client, namespace, rpm=None, tpm=1000)
        assert g.acquire("m", 400) == 0.0
        assert g.acquire("m", 400) == 0.0
        assert g.usage("m") == (2, 800)
        waited = g.acquire("m", 400)
        assert 0.8 < waited < 1.3

    def test_small_request_fits_beside_large_ones(
        self, redis_client: redis.Redis, namespace: str
    ) -> None:
        """The budget counts tokens, not requests: a small request uses what is left."""
        g = gate(redis_client, namespace, rpm=None, tpm=1000)
        g.acquire("m", 900)
        assert g.acquire("m", 100) == 0.0

    def test_request_larger_than_budget_is_clamped(
        self, redis_client: redis.Redis, namespace: str
    ) -> None:
        """A request bigger than a whole window's tokens goes alone instead of never."""
        g = gate(redis_client, namespace, rpm=None, tpm=1000)
        assert g.acquire("m", 5000) == 0.0
        assert g.usage("m") == (1, 1000)


class TestWaiting:
    def test_too_long_a_wait_is_a_transient_error(
        self, redis_client: redis.Redis, namespace: str
    ) -> None:
        """Past max_wait_s the gate gives up with a Retry-After, so the task retries later."""
        g = gate(redis_client, namespace, rpm=1, tpm=None, max_wait_s=0.2)
        g.acquire("m", 1)
        with pytest.raises(RateLimitWaitError) as info:
            g.acquire("m", 1)
        assert info.value.retry_after is not None
        assert 0.5 < info.value.retry_after <= 1.0

    def test_waits_are_reported(self, redis_client: redis.Redis, namespace: str) -> None:
        """Each wait is reported once (for the rate-limit wait metric)."""
        seen: list[tuple[str, float]] = []
        limit = RateLimit(rpm=1)
        g = RedisRateGate(
            redis_client,
            namespace,
            lambda _m: limit,
            window_ms=300,
            on_wait=lambda m, s: seen.append((m, s)),
        )
        g.acquire("m", 1)
        g.acquire("m", 1)
        assert len(seen) == 1
        assert seen[0][0] == "m"
        assert seen[0][1] > 0.2


def _hammer(url: str, namespace: str, rpm: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    client = redis.Redis.from_url(url)
    g = gate(client, namespace, rpm=rpm, tpm=None, max_wait_s=30)
    stamps = []
    end = time.time() + seconds
    while time.time() < end:
        g.acquire("m", 1)
        stamps.append(time.time())
    out.put(stamps)


class TestShared:
    def test_processes_share_one_limit(self, redis_url: str, namespace: str) -> None:
        """Four processes hammering one model admit at most rpm requests in any window."""
        rpm, seconds = 20, 2.5
        # fork: the children start at once with everything imported (spawn re-imports the
        # pipeline in each, seconds apiece); each opens its own Redis connection.
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        procs = [
            ctx.Process(target=_hammer, args=(redis_url, namespace, rpm, seconds, out))
            for _ in range(4)
        ]
        for p in procs:
            p.start()
        stamps = sorted(s for _ in procs for s in out.get(timeout=30))
        for p in procs:
            p.join(timeout=10)
        # Admission times are read after the script returns, so allow a few ms of skew.
        window = WINDOW_MS / 1000 - 0.02
        busiest = max(sum(1 for t in stamps if s <= t < s + window) for s in stamps)
        assert busiest <= rpm
        assert len(stamps) >= rpm * 2  # and the limit was actually used, not starved
