"""The most model calls one item can cost, derived from the retry settings in one place.

`pipeline.llm` spends its re-ask budget from here, and the workers' start-up check
(visibility timeout) bounds a task's time with it, so the two cannot drift apart. Kept out of
`pipeline.llm` so that a check at start-up does not import the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.config import Settings


@dataclass(frozen=True)
class CallBudget:
    """Worst case of HTTP calls for one item (one task attempt, in a worker).

    A *sequence* asks for one answer: the first answer and each re-ask (a truncated answer's
    retry spends the same budget), plus the fallback's n-choice call when it is enabled.
    Each sequence is up to `1 + max_transport_retries` HTTP calls, with the SDK's backoff
    before each retry.
    """

    answers: int
    sample_calls: int
    calls_per_sequence: int

    @property
    def sequences(self) -> int:
        return self.answers + self.sample_calls

    @property
    def calls(self) -> int:
        return self.sequences * self.calls_per_sequence

    @property
    def backoffs(self) -> int:
        """SDK backoff waits: one before each transport retry."""
        return self.sequences * (self.calls_per_sequence - 1)


def call_budget(settings: Settings) -> CallBudget:
    return CallBudget(
        answers=settings.max_reasks + 1,
        sample_calls=1 if settings.fallback.enabled else 0,
        calls_per_sequence=settings.max_transport_retries + 1,
    )
