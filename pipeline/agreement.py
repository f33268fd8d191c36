"""Fallback signals for borderline items: agreement across n samples, and grounding strength.

When the logprob signal cannot be trusted on its own (no profile for the served version, a
collapsed signal, no logprobs) or sits in the uncertain band, the item pays for ONE extra
call asking for `n` choices at temperature > 0 (`LLMClient.sample`, the runner makes it).
Everything here is a pure function of the finding reports and those samples. Definitions,
used everywhere:

- a sample's verdict on a rule: true if it has a finding citing that rule (id compared after
  trimming whitespace, as citations are checked) with verdict true; false otherwise, so a
  sample that does not mention the rule says "not violated";
- finding agreement: share of parsed samples whose verdict on the finding's rule equals the
  finding's verdict;
- item agreement: share of parsed samples reaching the same item decision (violation or
  not) as the primary answer;
- grounding strength: mean quote match score / 100 (an ungrounded quote counts 0);
- fallback confidence: finding agreement x grounding strength. Both must be high for it to
  be high. It is a heuristic score, not a calibrated probability: it orders the review queue
  and is recorded, and never auto-actions (`pipeline.routing`).

Samples that do not parse (malformed or truncated JSON) are left out, not counted as
disagreeing: they say nothing about the verdict. Verbalized confidence is never asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.errors import LLMError
from pipeline.models import FallbackReport, FindingReport
from pipeline.routing import SignalStanding
from pipeline.schema import ModerationResult

# ----------------------------------------------------------------------------- borderline


def borderline_reason(
    reports: Sequence[FindingReport], standing: SignalStanding, band: tuple[float, float]
) -> str | None:
    """Why this item should pay for samples, or None.

    Only items with a valid violation (grounded, citing a real rule) qualify: the others end
    as no_violation or suppressed whatever samples say, so sampling them buys nothing.
    """
    violations = [r for r in reports if r.verdict and r.valid]
    if not violations:
        return None
    if standing.profile_id is None:
        return "no_calibration_profile"
    if standing.collapsed:
        return "signal_collapsed"
    if any(r.p_true is None or r.confidence is None for r in violations):
        return "no_logprobs"
    low, high = band
    if any(low <= r.confidence < high for r in violations if r.confidence is not None):
        return "confidence_in_band"
    return None


# ----------------------------------------------------------------------------- agreement


def sample_verdicts(result: ModerationResult) -> dict[str, bool]:
    """Rule id -> the sample's verdict on it (any true finding for the rule makes it true)."""
    verdicts: dict[str, bool] = {}
    for finding in result.findings:
        rule_id = finding.rule_id.strip()
        verdicts[rule_id] = verdicts.get(rule_id, False) or finding.verdict
    return verdicts


def finding_agreement(
    rule_id: str, verdict: bool, samples: Sequence[ModerationResult]
) -> float | None:
    if not samples:
        return None
    key = rule_id.strip()
    same = sum(sample_verdicts(s).get(key, False) == verdict for s in samples)
    return same / len(samples)


def item_agreement(violation: bool, samples: Sequence[ModerationResult]) -> float | None:
    if not samples:
        return None
    return sum(s.violation == violation for s in samples) / len(samples)


def grounding_strength(report: FindingReport) -> float:
    """Mean match score of the finding's quotes in [0, 1]; ungrounded quotes count 0."""
    if not report.quotes:
        return 0.0
    return sum(q.match.score / 100.0 if q.match else 0.0 for q in report.quotes) / len(
        report.quotes
    )


def fallback_confidence(agreement: float, strength: float) -> float:
    return agreement * strength


# ----------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Agreement:
    """The reports scored against the samples, and the record for the Decision."""

    reports: list[FindingReport]
    record: FallbackReport


def agreement(
    reason: str,
    reports: Sequence[FindingReport],
    samples: Sequence[ModerationResult],
    *,
    requested: int,
    error: LLMError | None = None,
) -> Agreement:
    """Score each finding on the samples that parsed; a failed call leaves them unscored."""
    if error is not None:
        record = FallbackReport(reason=reason, requested=requested, samples=0, error=str(error))
        return Agreement(list(reports), record)
    violation = any(r.verdict for r in reports)
    record = FallbackReport(
        reason=reason,
        requested=requested,
        samples=len(samples),
        agreement=item_agreement(violation, samples),
    )
    return Agreement([_score(r, samples) for r in reports], record)


def _score(report: FindingReport, samples: Sequence[ModerationResult]) -> FindingReport:
    share = finding_agreement(report.rule_id, report.verdict, samples)
    if share is None:
        return report
    confidence = fallback_confidence(share, grounding_strength(report))
    return report.model_copy(update={"agreement": share, "fallback_confidence": confidence})
