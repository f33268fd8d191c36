"""One item through every stage: prompt → LLM → grounding → citations → signal → routing.

`Moderator.moderate` never raises for anything an item or the provider does: every item ends
as a Decision (an error Decision when the pipeline could not get a verdict). Queue workers
call `attempt`, which lets a transient provider failure propagate so the queue can retry the
item later, and `failed` once the queue's own retries are spent.
"""

from __future__ import annotations

import time

import structlog
from openai.types.chat import ChatCompletionMessageParam

from pipeline.agreement import agreement, borderline_reason
from pipeline.calibration.collapse import CollapseDetector
from pipeline.citations import check_citation
from pipeline.config import Settings
from pipeline.errors import InputError, LLMError, LLMTransientError, QuoteguardError
from pipeline.grounding import Grounder
from pipeline.inputs import as_unicode, unencodable
from pipeline.llm import LLMAnswer, LLMClient, RateGate, elapsed_ms
from pipeline.log import redact_text
from pipeline.models import (
    ContentItem,
    Decision,
    ErrorInfo,
    FallbackReport,
    FindingReport,
    QuoteVerdict,
    SignalReport,
    Usage,
    VerdictSignal,
)
from pipeline.policies import PolicySet, load_policies
from pipeline.prompt import build_messages
from pipeline.routing import Route, SignalStanding, route
from pipeline.schema import Finding
from pipeline.signal import read_signal
from pipeline.standing import SignalWatch

log = structlog.get_logger("quoteguard")


class Moderator:
    """The pipeline for one model on one policy set; thread-safe, reuse it for many items."""

    def __init__(
        self,
        settings: Settings,
        policies: PolicySet,
        client: LLMClient,
        watch: SignalWatch | None = None,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.client = client
        self.watch = watch or SignalWatch.from_settings(settings)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        rate_gate: RateGate | None = None,
        detector: CollapseDetector | None = None,
    ) -> Moderator:
        """`rate_gate` and `detector` are what a fleet shares (workers pass Redis-backed ones)."""
        policies = load_policies(settings.policies_dir)
        watch = SignalWatch.from_settings(settings, detector)
        return cls(settings, policies, LLMClient(settings, rate_gate=rate_gate), watch)

    def close(self) -> None:
        """Release the HTTP connections to the provider."""
        self.client.close()

    def __enter__(self) -> Moderator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def model(self) -> str:
        return self.settings.model

    @property
    def policy_version(self) -> str:
        return self.policies.version

    # -- entry points ----------------------------------------------------------------------

    def moderate(self, item: ContentItem) -> Decision:
        """Never raises: a provider that stays unavailable yields an error Decision."""
        try:
            return self.attempt(item)
        except LLMTransientError as exc:
            return self.failed(item, exc)
        except Exception as exc:
            log.exception("internal_error", item_id=item.id)
            return self.failed(item, exc)

    def attempt(self, item: ContentItem) -> Decision:
        """Like `moderate`, but a transient provider failure raises for the caller to retry."""
        start = time.perf_counter()
        bound = log.bind(item_id=item.id, model=self.model, policy_version=self.policy_version)
        problem = self.input_problem(item)
        if problem is not None:
            bound.warning("invalid_input", problem=problem.message)
            return self._error_decision(item, problem, "input", start, invalid_input=True)
        messages = build_messages(item.text, self.policies)
        try:
            answer = self.client.moderate(messages)
        except LLMTransientError:
            raise
        except LLMError as exc:
            bound.warning("llm_failed", error_kind=exc.kind, error=str(exc))
            return self._error_decision(item, exc, "llm", start)
        bound.info(
            "llm_response",
            served_model=answer.completion.model,
            system_fingerprint=answer.completion.system_fingerprint,
            calls=answer.stats.calls,
            findings=len(answer.result.findings),
        )
        return self._decide(item, messages, answer, start, bound)

    def failed(self, item: ContentItem, error: Exception) -> Decision:
        """The error Decision for an item whose retries are spent; it goes to review."""
        log.warning("item_failed", item_id=item.id, error_kind=_kind(error), error=str(error))
        return self._error_decision(item, error, "llm", time.perf_counter())

    def rejected(self, item_id: str, error: InputError) -> Decision:
        """The error Decision for an input line that never became an item."""
        log.warning("invalid_input", item_id=item_id, problem=str(error))
        item = ContentItem(id=item_id, text="")
        return self._error_decision(item, error, "input", time.perf_counter(), invalid_input=True)

    def input_problem(self, item: ContentItem) -> InputError | None:
        # Items read by pipeline.inputs were checked there; one built in code was not.
        unstorable = unencodable(item)
        if unstorable is not None:
            return InputError(as_unicode(item.id), unstorable)
        if not item.text.strip():
            return InputError(item.id, "content is empty or whitespace only; nothing to moderate")
        if len(item.text) > self.settings.max_content_chars:
            return InputError(
                item.id,
                f"content has {len(item.text):,} characters, more than max_content_chars="
                f"{self.settings.max_content_chars:,}; split it or raise the limit",
            )
        return None

    # -- stages after the model answered -----------------------------------------------------

    def _decide(
        self,
        item: ContentItem,
        messages: list[ChatCompletionMessageParam],
        answer: LLMAnswer,
        start: float,
        bound: structlog.BoundLogger,
    ) -> Decision:
        completion = answer.completion
        findings = answer.result.findings
        signal = read_signal(completion, len(findings))
        # Normalised once per item; every quote of every finding is located against it.
        content = Grounder(item.text)
        checked = [
            self._check_finding(f, v, content)
            for f, v in zip(findings, signal.verdicts, strict=True)
        ]
        # The live collapse window sees the same population a profile is fitted on: valid
        # violations. Verdict-false findings sit near p=0 and would hide a collapse (all
        # violations at p=1) behind a spread that only says "the verdicts differ".
        live = [v for r, v in zip(checked, signal.verdicts, strict=True) if r.verdict and r.valid]
        standing = self.watch.standing(completion.model, completion.system_fingerprint, live)
        reports = [
            r.model_copy(update={"confidence": self.watch.calibrate(standing, r.p_true)})
            for r in checked
        ]
        for report in reports:
            bound.info(
                "grounding_verdict",
                rule_id=report.rule_id,
                rule_exists=report.citation.exists,
                grounded=[q.grounded for q in report.quotes],
                methods=[q.match.method if q.match else None for q in report.quotes],
                p_true=report.p_true,
                confidence=report.confidence,
            )
        reports, fallback, usage = self._fallback(messages, reports, standing, bound)
        routed = route(reports, standing, self.settings.routing)
        bound.info(
            "routed", outcome=routed.outcome, priority=routed.priority, reasons=routed.reasons
        )
        return Decision(
            item_id=item.id,
            outcome=routed.outcome,
            review_priority=routed.priority,
            reasons=routed.reasons,
            findings=reports,
            model=self.model,
            served_model=completion.model,
            system_fingerprint=completion.system_fingerprint,
            policy_version=self.policy_version,
            profile_id=standing.profile_id,
            signal=_with_standing(signal.report, standing),
            usage=answer.usage + usage,
            latency_ms=elapsed_ms(start),
            fallback=fallback,
            meta=item.meta,
        )

    def _fallback(
        self,
        messages: list[ChatCompletionMessageParam],
        reports: list[FindingReport],
        standing: SignalStanding,
        bound: structlog.BoundLogger,
    ) -> tuple[list[FindingReport], FallbackReport | None, Usage]:
        """Samples and agreement for a borderline item: reports, record and the extra usage."""
        config = self.settings.fallback
        reason = borderline_reason(reports, standing, config.band) if config.enabled else None
        if reason is None:
            return reports, None, Usage()
        samples = self.client.sample(messages, config.n_samples, config.temperature)
        scored = agreement(
            reason, reports, samples.results, requested=samples.requested, error=samples.error
        )
        if samples.error is not None:
            bound.warning(
                "fallback_failed",
                reason=reason,
                error_kind=samples.error.kind,
                error=str(samples.error),
            )
        else:
            bound.info(
                "fallback_sampled",
                reason=reason,
                requested=samples.requested,
                samples=len(samples.results),
                calls=samples.usage.calls,
                agreement=scored.record.agreement,
                finding_agreement=[r.agreement for r in scored.reports],
            )
        return scored.reports, scored.record, samples.usage

    def _check_finding(
        self,
        finding: Finding,
        verdict: VerdictSignal,
        content: Grounder,
    ) -> FindingReport:
        """Grounding and citation; confidence is added once the standing is known."""
        rule = self.policies.rule(finding.rule_id.strip())
        return FindingReport(
            rule_id=finding.rule_id,
            verdict=finding.verdict,
            explanation=finding.explanation,
            quotes=[QuoteVerdict(quote=q, match=content.locate(q)) for q in finding.quotes],
            citation=check_citation(finding.rule_id, self.policies),
            severity=rule.severity if rule else None,
            p_true=verdict.p_true,
            verdict_logprobs=verdict.tokens,
        )

    def _error_decision(
        self,
        item: ContentItem,
        error: BaseException,
        stage: str,
        start: float,
        *,
        invalid_input: bool = False,
    ) -> Decision:
        routed: Route = route(
            [], SignalStanding(), self.settings.routing, failed=True, invalid_input=invalid_input
        )
        return Decision(
            item_id=item.id,
            outcome=routed.outcome,
            review_priority=routed.priority,
            reasons=routed.reasons,
            model=self.model,
            policy_version=self.policy_version,
            signal=SignalReport(available=False, note="no verdict: the item failed before one"),
            # The calls a failed model request cost still count (the error carries them).
            usage=Usage(calls=error.calls) if isinstance(error, LLMError) else Usage(),
            latency_ms=elapsed_ms(start),
            errors=[ErrorInfo(kind=_kind(error), message=_error_text(error), stage=stage)],
            meta=item.meta,
        )


def _error_text(error: BaseException) -> str:
    """The error's text as a Decision may carry it to a webhook, a reviewer and a log.

    A provider's error body can echo the API key; a surrogate in it (it may quote the input)
    would make the Decision unserialisable, and the item would vanish with it.
    """
    return redact_text(as_unicode(str(error)))


def _kind(error: BaseException) -> str:
    return error.kind if isinstance(error, QuoteguardError) else type(error).__name__


def _with_standing(report: SignalReport, standing: SignalStanding) -> SignalReport:
    if standing.note is None:
        return report
    note = f"{report.note}; {standing.note}" if report.note else standing.note
    return report.model_copy(update={"note": note})
