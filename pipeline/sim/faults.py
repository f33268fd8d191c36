"""Which fault a request meets, how long it waits, and how a broken answer is broken.

The n-th request's fault and latency are drawn from a generator keyed by (seed, n), so a
run with the same seed and the same request order meets the same faults. A fault script
forces the first requests' faults, so a test can say "two 429s, then an answer".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.sim.config import FAULT_KINDS, FaultConfig, FaultKind, LatencyConfig
from pipeline.sim.seeding import rng_for


@dataclass(frozen=True)
class Plan:
    """What happens to one request before the model answers it."""

    number: int
    fault: FaultKind | None
    latency_s: float


class FaultPlanner:
    """Numbers requests and draws each one's fault and latency. Thread-safe."""

    def __init__(self, faults: FaultConfig, latency: LatencyConfig, seed: int) -> None:
        self._faults = faults
        self._latency = latency
        self._seed = seed
        self._count = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._count = 0

    def next(self, forced: FaultKind | None = None) -> Plan:
        with self._lock:
            n = self._count
            self._count += 1
        return Plan(n, forced or self._fault(n), self._delay(n))

    def _fault(self, n: int) -> FaultKind | None:
        if n < len(self._faults.script):
            return self._faults.script[n]
        draw = rng_for(self._seed, "fault", n).random()
        for kind in FAULT_KINDS:
            draw -= self._faults.rate(kind)
            if draw < 0:
                return kind
        return None

    def _delay(self, n: int) -> float:
        mean = self._latency.mean_ms / 1000
        if mean <= 0 or self._latency.distribution == "fixed":
            return mean
        sigma = self._latency.sigma
        # mu chosen so the lognormal's mean (not its median) is the configured mean.
        mu = math.log(mean) - sigma**2 / 2
        return rng_for(self._seed, "latency", n).lognormvariate(mu, sigma)


def _prose(text: str) -> str:
    return f"Sure! Here is my assessment of the content:\n{text}"


def _trailing_comma(text: str) -> str:
    return text[:-2] + ",]}"


def _single_quotes(text: str) -> str:
    return text.replace('"', "'")


def _unclosed(text: str) -> str:
    return text[:-1]


#: Ways models break JSON while claiming to have finished (finish_reason "stop").
MALFORMATIONS: dict[str, Callable[[str], str]] = {
    "prose": _prose,
    "trailing_comma": _trailing_comma,
    "single_quotes": _single_quotes,
    "unclosed": _unclosed,
}


def malform(text: str, seed: int, key: object) -> str:
    name = rng_for(seed, "malform", key).choice(sorted(MALFORMATIONS))
    return MALFORMATIONS[name](text)


def cut_point(n_tokens: int, seed: int, key: object) -> int:
    """How many tokens a truncated answer keeps: 30-80 %, at least one, never all."""
    if n_tokens <= 1:
        return 0
    share = rng_for(seed, "truncate", key).uniform(0.3, 0.8)
    return min(n_tokens - 1, max(1, round(n_tokens * share)))
