"""Aggregates a run's Decisions into the figures a moderation lead looks at first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from statistics import quantiles

from pipeline.models import Decision

OUTCOMES = ("auto_action", "human_review", "no_violation", "suppressed", "error")


@dataclass
class RunSummary:
    items: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    findings: int = 0
    violations: int = 0
    ungrounded_quotes: int = 0
    quotes: int = 0
    hallucinated_rules: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    no_signal: int = 0
    p_true: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0

    def add(self, decision: Decision) -> None:
        self.items += 1
        self.outcomes[decision.outcome] += 1
        self.errors.update(e.kind for e in decision.errors)
        if not decision.errors and not decision.signal.available:
            self.no_signal += 1
        usage = decision.usage
        self.prompt_tokens += usage.prompt_tokens
        self.cached_tokens += usage.cached_tokens
        self.completion_tokens += usage.completion_tokens
        self.calls += usage.calls
        for finding in decision.findings:
            self.findings += 1
            self.violations += finding.verdict
            self.quotes += len(finding.quotes)
            self.ungrounded_quotes += sum(not q.grounded for q in finding.quotes)
            if not finding.citation.exists:
                self.hallucinated_rules[finding.rule_id] += 1
            if finding.verdict and finding.p_true is not None:
                self.p_true.append(finding.p_true)

    def confidence_spread(self) -> dict[str, float] | None:
        """Quartiles of P(true) on violations, and the share at p >= 0.999 (collapse shows)."""
        if len(self.p_true) < 2:
            return None
        q1, median, q3 = quantiles(self.p_true, n=4)
        return {
            "min": min(self.p_true),
            "q1": q1,
            "median": median,
            "q3": q3,
            "share_at_0.999": sum(p >= 0.999 for p in self.p_true) / len(self.p_true),
        }
