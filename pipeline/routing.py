"""Routing: a pure function from checked findings and the signal's standing to an outcome.

    no verdict (an error)                      -> error           (review queue)
    no finding with verdict true               -> no_violation
    every violation ungrounded / hallucinated  -> suppressed      (never actioned)
    any violation invalid, review_when_any_... -> human_review
    policy in always_review_policies           -> human_review
    only short quotes found inside longer words -> human_review   (weak grounding)
    only quotes with copying slips (weak match) -> human_review   (slip grounding, always)
    no calibration profile for this version    -> human_review    (logprobs not trusted)
    signal collapsed for this version          -> human_review
    calibrated confidence below the threshold  -> human_review
    otherwise                                  -> auto_action

Every rule reads its numbers from `RoutingConfig`; reasons name the rules that fired.

Fallback confidence (sample agreement x grounding strength, `pipeline.agreement`) never
decides an outcome: no profile is fitted on it, so it cannot say how often it is right. It
only stands in for a missing calibrated confidence when ordering the review queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.config import RoutingConfig
from pipeline.models import FindingReport, Outcome


@dataclass(frozen=True)
class SignalStanding:
    """How far this model version's logprobs may be trusted right now."""

    profile_id: str | None = None
    threshold: float | None = None  # calibrated confidence needed for auto action
    collapsed: bool = False
    note: str | None = None
    # Maps a raw verdict probability to a calibrated one; not used by routing itself.
    calibrator: Callable[[float], float] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Route:
    outcome: Outcome
    priority: int
    reasons: list[str] = field(default_factory=list)


def route(
    findings: Sequence[FindingReport],
    standing: SignalStanding,
    config: RoutingConfig,
    *,
    failed: bool = False,
    invalid_input: bool = False,
) -> Route:
    if invalid_input:
        return Route("error", config.invalid_input_priority, ["invalid_input"])
    if failed:
        return Route("error", config.error_priority, ["pipeline_error"])
    violations = [f for f in findings if f.verdict]
    if not violations:
        return Route("no_violation", 0, [])
    invalid = [f for f in violations if not f.valid]
    reasons = [_invalid_reason(f) for f in invalid]
    valid = [f for f in violations if f.valid]
    if not valid:
        outcome: Outcome = "human_review" if config.review_suppressed else "suppressed"
        priority = _priority(invalid, config) if config.review_suppressed else 0
        return Route(outcome, priority, [*reasons, "all_violations_invalid"])
    reasons += _review_reasons(valid, invalid, standing, config)
    if reasons:
        return Route("human_review", _priority(valid, config), reasons)
    return Route("auto_action", 0, [f"confident:{_min_confidence(valid):.4f}"])


def _review_reasons(
    valid: list[FindingReport],
    invalid: list[FindingReport],
    standing: SignalStanding,
    config: RoutingConfig,
) -> list[str]:
    reasons: list[str] = []
    if invalid and config.review_when_any_invalid:
        reasons.append("invalid_beside_valid")
    if not config.auto_action_enabled:
        reasons.append("auto_action_disabled")
    reasons += [
        f"always_review_policy:{f.rule_id}"
        for f in valid
        if f.rule_id.strip().split(".")[0] in config.always_review_policies
    ]
    reasons += [
        f"weak_grounding:{f.rule_id}" for f in valid if _weakly_grounded(f, config.weak_quote_chars)
    ]
    # Not a setting: a quote that differs from the content by a slip points at a span but
    # does not prove the content says it, so a person looks at that span first.
    reasons += [f"slip_grounding:{f.rule_id}" for f in valid if _only_slips(f)]
    if standing.profile_id is None:
        reasons.append("no_calibration_profile")
    elif standing.collapsed:
        reasons.append("signal_collapsed")
    elif standing.threshold is None:
        reasons.append("profile_allows_no_auto_action")
    else:
        needed = max(standing.threshold, config.auto_action_floor)
        low = _min_confidence(valid)
        if low < needed:
            reasons.append(f"low_confidence:{low:.4f}<{needed:.4f}")
    return reasons


def _weakly_grounded(finding: FindingReport, weak_chars: int) -> bool:
    """Every grounded quote is a short string found only inside a longer word."""
    matched = [q for q in finding.quotes if q.match is not None]
    return bool(matched) and all(
        q.match is not None and q.match.cuts_word and sum(c.isalnum() for c in q.quote) < weak_chars
        for q in matched
    )


def _only_slips(finding: FindingReport) -> bool:
    """No grounded quote of the finding is a strong (verbatim or normalised) match."""
    matched = [q.match for q in finding.quotes if q.match is not None]
    return bool(matched) and all(m.strength == "weak" for m in matched)


def _invalid_reason(finding: FindingReport) -> str:
    if not finding.citation.exists:
        return f"hallucinated_rule:{finding.rule_id}"
    return f"ungrounded_quote:{finding.rule_id}"


def _queue_confidence(finding: FindingReport) -> float | None:
    """Calibrated confidence if there is one, else the fallback score: ordering only."""
    return finding.confidence if finding.confidence is not None else finding.fallback_confidence


def _min_confidence(findings: Sequence[FindingReport]) -> float:
    """The weakest violation decides: every actioned violation must be confident."""
    return min((f.confidence if f.confidence is not None else 0.0) for f in findings)


def _priority(findings: Sequence[FindingReport], config: RoutingConfig) -> int:
    base = max((config.severity_priority.get(f.severity or "", 0) for f in findings), default=0)
    confidences = [c for f in findings if (c := _queue_confidence(f)) is not None]
    # 1 at confidence 0.5 (or unknown), 0 at 0 or 1: the least sure items are reviewed first.
    weakest = min(confidences) if confidences else 0.5
    uncertainty = 1 - abs(2 * weakest - 1)
    return max(0, min(100, base + round(config.uncertainty_priority * uncertainty)))
