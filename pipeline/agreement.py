"""Fallback signals for borderline items: agreement across n samples, and grounding strength.

When the logprob signal cannot be trusted on its own (no profile for the served version, a
collapsed signal, no logprobs) or sits in the uncertain band, the item pays for ONE extra
call asking for `n` choices at temperature > 0. instructor parses only choice 0, so every
choice is parsed here with the same schema. Definitions, used everywhere:

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
from dataclasses import dataclass, field

import structlog
from instructor.processing.response import handle_response_model
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import ValidationError

from pipeline.config import FallbackConfig
from pipeline.errors import LLMError
from pipeline.llm import MODES, LLMClient, _tracking, translate_error
from pipeline.models import FallbackReport, FindingReport, Usage
from pipeline.routing import SignalStanding
from pipeline.schema import ModerationResult

log = structlog.get_logger("quoteguard")


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


# ----------------------------------------------------------------------------- the call


def parse_choice(content: str | None) -> ModerationResult | None:
    """A choice's JSON as the schema, or None. JSON mode may wrap it in prose or a fence,
    so the outermost braces are tried when the whole text does not parse."""
    if not content:
        return None
    try:
        return ModerationResult.model_validate_json(content)
    except ValidationError:
        start, end = content.find("{"), content.rfind("}")
        if 0 <= start < end:
            try:
                return ModerationResult.model_validate_json(content[start : end + 1])
            except ValidationError:
                return None
        return None


@dataclass
class SampleCall:
    """What one n-sample request returned; `error` set instead of raising."""

    requested: int
    results: list[ModerationResult] = field(default_factory=list)
    completion: ChatCompletion | None = None
    calls: int = 0
    error: LLMError | None = None


def sample_call(
    client: LLMClient, messages: list[ChatCompletionMessageParam], config: FallbackConfig
) -> SampleCall:
    """One request for `config.n_samples` choices; never raises for provider failures.

    The request is built by instructor for the configured mode (same schema, same system
    prompt, so the provider's prompt cache still applies); only the sampling differs.
    Logprobs are not asked for: agreement does not use them.
    """
    kwargs = {
        **client.request_kwargs(),
        "n": config.n_samples,
        "temperature": config.temperature,
        "logprobs": False,
    }
    kwargs.pop("top_logprobs", None)
    _, request = handle_response_model(
        ModerationResult, mode=MODES[client.settings.output_mode], messages=messages, **kwargs
    )
    out = SampleCall(requested=config.n_samples)
    # The client's HTTP hooks count every request (SDK retries included) into this tracker,
    # so the extra calls an item paid for are exact.
    with _tracking() as stats:
        try:
            completion = client.openai.chat.completions.create(**request)
        except Exception as exc:  # noqa: BLE001 - an optional call: the primary answer stands
            out.error = translate_error(exc, calls=stats.calls)
            out.calls = stats.calls
            return out
    out.calls = stats.calls
    out.completion = completion
    for choice in completion.choices:
        if choice.finish_reason == "length":
            continue  # cut short: its JSON is incomplete
        parsed = parse_choice(choice.message.content)
        if parsed is not None:
            out.results.append(parsed)
    return out


# ----------------------------------------------------------------------------- runner glue


@dataclass(frozen=True)
class FallbackOutcome:
    reports: list[FindingReport]
    record: FallbackReport | None = None
    usage: Usage = field(default_factory=Usage)


class Fallback:
    """Decides whether an item is borderline and, if so, samples and scores agreement."""

    def __init__(self, client: LLMClient, config: FallbackConfig) -> None:
        self.client = client
        self.config = config

    def apply(
        self,
        messages: list[ChatCompletionMessageParam],
        reports: list[FindingReport],
        standing: SignalStanding,
        bound: structlog.BoundLogger | None = None,
    ) -> FallbackOutcome:
        logger = bound or log
        if not self.config.enabled:
            return FallbackOutcome(reports)
        reason = borderline_reason(reports, standing, self.config.band)
        if reason is None:
            return FallbackOutcome(reports)
        call = sample_call(self.client, messages, self.config)
        usage = _usage(call)
        if call.error is not None:
            logger.warning(
                "fallback_failed", reason=reason, error_kind=call.error.kind, error=str(call.error)
            )
            record = FallbackReport(
                reason=reason, requested=call.requested, samples=0, error=str(call.error)
            )
            return FallbackOutcome(reports, record, usage)
        samples = call.results
        violation = any(r.verdict for r in reports)
        scored = [_score(r, samples) for r in reports]
        record = FallbackReport(
            reason=reason,
            requested=call.requested,
            samples=len(samples),
            agreement=item_agreement(violation, samples),
        )
        logger.info(
            "fallback_sampled",
            reason=reason,
            requested=call.requested,
            samples=len(samples),
            calls=call.calls,
            agreement=record.agreement,
            finding_agreement=[r.agreement for r in scored],
        )
        return FallbackOutcome(scored, record, usage)


def _score(report: FindingReport, samples: Sequence[ModerationResult]) -> FindingReport:
    agreement = finding_agreement(report.rule_id, report.verdict, samples)
    if agreement is None:
        return report
    confidence = fallback_confidence(agreement, grounding_strength(report))
    return report.model_copy(update={"agreement": agreement, "fallback_confidence": confidence})


def _usage(call: SampleCall) -> Usage:
    u = call.completion.usage if call.completion is not None else None
    cached = u.prompt_tokens_details.cached_tokens or 0 if u and u.prompt_tokens_details else 0
    return Usage(
        prompt_tokens=u.prompt_tokens if u else 0,
        completion_tokens=u.completion_tokens if u else 0,
        cached_tokens=cached,
        calls=call.calls,
        sample_calls=call.calls,
    )
