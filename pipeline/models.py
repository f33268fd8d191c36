"""The records that cross stage boundaries (and, in workers, a broker).

Every model here is pydantic and serialises to plain JSON, so a Decision written by the
in-process runner and one written by a Celery worker are the same bytes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContentItem(Frozen):
    """One piece of user content to moderate."""

    id: str = Field(min_length=1, description="Caller's stable id for the item.")
    text: str
    meta: dict[str, JsonValue] = Field(default_factory=dict)


# ----------------------------------------------------------------------------- grounding

MatchMethod = Literal["exact", "normalized", "fuzzy"]
#: Verbatim or normalised is strong; a copying slip is weak and never alone auto-actions.
MatchStrength = Literal["strong", "weak"]
#: What the quote did to the content's text, letter by letter, seen from the quote.
SlipKind = Literal["dropped", "added", "changed", "swapped"]


class SlipEdit(Frozen):
    """One letter the quote got wrong against the content: what a reviewer is shown."""

    kind: SlipKind = Field(
        description="dropped: the quote lacks `found`; added: the quote has `quoted` where the "
        "content has nothing; changed: `quoted` instead of `found`; swapped: two letters "
        "transposed."
    )
    start: int = Field(ge=0, description="Content offset of `found` (or the insertion point).")
    end: int = Field(ge=0)
    found: str = Field(description="The content's text at [start, end); '' when added.")
    quoted: str = Field(description="What the quote has there, normalised; '' when dropped.")


class Match(Frozen):
    """Where a quote was found: offsets into the original content, `content[start:end]`."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    score: float = Field(ge=0, le=100)
    method: MatchMethod
    cuts_word: bool = Field(
        default=False,
        description="The span starts or ends inside a word of the content: a short quote "
        "found only there ('ass' in 'classic') proves little.",
    )
    strength: MatchStrength = Field(
        # Decisions stored before matches were graded have no strength: a fuzzy one was a slip.
        default_factory=lambda data: "weak" if data.get("method") == "fuzzy" else "strong",
        description="strong: the content holds the quote (verbatim or normalised); weak: the "
        "quote differs by copying slips (`edits`), so it points at a span but does not prove it.",
    )
    edits: list[SlipEdit] = Field(
        default_factory=list, description="The slips of a weak match, in content order."
    )


class QuoteVerdict(Frozen):
    """A quote the model gave and whether code found it in the content."""

    quote: str
    match: Match | None

    @property
    def grounded(self) -> bool:
        return self.match is not None


# ----------------------------------------------------------------------------- citations


class CitationCheck(Frozen):
    rule_id: str
    exists: bool
    nearest: list[str] = Field(default_factory=list, description="Closest real ids on a miss.")


# ----------------------------------------------------------------------------- signal


class TopLogprob(Frozen):
    token: str
    logprob: float


class TokenLogprob(Frozen):
    """One generated token with its logprob and the provider's top alternatives (raw)."""

    token: str
    logprob: float
    top: list[TopLogprob] = Field(default_factory=list)


class VerdictSignal(Frozen):
    """Probability that a finding's verdict is `true`, read from its verdict token(s)."""

    p_true: float | None
    tokens: list[TokenLogprob] = Field(default_factory=list)
    note: str | None = None


class CompletionStats(Frozen):
    """Whole-completion logprob statistics, logged so collapse can be seen after the fact."""

    n_tokens: int
    mean_logprob: float
    min_logprob: float
    share_at_zero: float = Field(description="Share of tokens with logprob > -1e-4.")
    mean_top_margin: float | None = Field(
        default=None, description="Mean gap between the chosen token and the runner-up."
    )


class SignalReport(Frozen):
    available: bool
    note: str | None = Field(default=None, description="Why there is no signal, said plainly.")
    stats: CompletionStats | None = None


# ----------------------------------------------------------------------------- decision

Outcome = Literal["auto_action", "human_review", "no_violation", "suppressed", "error"]


class FindingReport(Frozen):
    """One finding of the model after code has checked it."""

    rule_id: str
    verdict: bool
    explanation: str
    quotes: list[QuoteVerdict]
    citation: CitationCheck
    severity: str | None = None
    p_true: float | None = Field(default=None, description="Raw verdict probability.")
    confidence: float | None = Field(
        default=None, description="Calibrated probability the violation is real, if profiled."
    )
    verdict_logprobs: list[TokenLogprob] = Field(default_factory=list)
    agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Share of fallback samples that gave this rule the same verdict (a sample "
        "without a finding for the rule counts as verdict false); None if not sampled.",
    )
    fallback_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="agreement x grounding strength: orders the review queue, never "
        "auto-actions (it is not calibrated).",
    )

    @property
    def grounded(self) -> bool:
        return bool(self.quotes) and all(q.grounded for q in self.quotes)

    @property
    def valid(self) -> bool:
        """Grounded and citing a rule that exists: the only kind that may be auto-actioned."""
        return self.grounded and self.citation.exists


class Usage(Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    calls: int = Field(default=0, description="HTTP calls made, re-asks and retries included.")
    sample_calls: int = Field(
        default=0, ge=0, description="Of `calls`, those made for fallback samples."
    )

    def __add__(self, other: Usage) -> Usage:
        """The usage of two calls of one item, field by field."""
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            calls=self.calls + other.calls,
            sample_calls=self.sample_calls + other.sample_calls,
        )


class ErrorInfo(Frozen):
    kind: str
    message: str
    stage: str


class FallbackReport(Frozen):
    """The one extra call a borderline item paid for: n samples at temperature > 0."""

    reason: str = Field(description="Why the item was borderline, e.g. no_calibration_profile.")
    requested: int = Field(ge=0, description="Samples asked for (the `n` parameter).")
    samples: int = Field(ge=0, description="Samples whose JSON parsed; agreement is over these.")
    agreement: float | None = Field(
        default=None, ge=0, le=1, description="Share of samples with the same item decision."
    )
    error: str | None = Field(default=None, description="Why the call failed, if it did.")


class Decision(Frozen):
    """Everything needed to audit what happened to one item."""

    item_id: str
    outcome: Outcome
    review_priority: int = Field(default=0, ge=0, le=100, description="Higher = review sooner.")
    reasons: list[str] = Field(default_factory=list, description="Routing rules that fired.")
    findings: list[FindingReport] = Field(default_factory=list)
    model: str
    served_model: str | None = None
    system_fingerprint: str | None = None
    policy_version: str
    profile_id: str | None = Field(default=None, description="Calibration profile used, if any.")
    signal: SignalReport = SignalReport(available=False, note="no model call was made")
    usage: Usage = Usage()
    latency_ms: float = 0.0
    errors: list[ErrorInfo] = Field(default_factory=list)
    fallback: FallbackReport | None = Field(
        default=None, description="Fallback sampling, if this item was borderline."
    )
    meta: dict[str, JsonValue] = Field(default_factory=dict)
    decided_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def key(self) -> str:
        """Idempotency key: one Decision per (item, policy-set version, model)."""
        return f"{self.policy_version}:{self.model}:{self.item_id}"
