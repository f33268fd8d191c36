"""What the item page shows, computed from a review entry and the policy set (no markup)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.models import Decision, FindingReport, Match
from pipeline.policies import PolicySet
from workers.review_queue import ReviewEntry
from workers.review_web.highlight import Highlight, Segment, Strength, segments

#: Routing reasons (see pipeline.routing) in the words a reviewer reads; "{}" is the detail.
REASONS: dict[str, str] = {
    "invalid_input": "The input could not be read as an item.",
    "pipeline_error": "The pipeline failed on this item; see the errors below.",
    "hallucinated_rule": "The model cited {}, a rule that does not exist.",
    "ungrounded_quote": "A quote the model gave for {} is not in the content.",
    "all_violations_invalid": "No finding held up: every one was ungrounded or cited no real rule.",
    "invalid_beside_valid": "Some findings held up and others did not.",
    "auto_action_disabled": "Automatic actions are switched off.",
    "always_review_policy": "Rule {} is always reviewed by a person.",
    "weak_grounding": "The quotes for {} are short and found only inside longer words.",
    "slip_grounding": "The quotes for {} differ from the content by copying slips: check the "
    "highlighted span says what the model quoted.",
    "no_calibration_profile": "This model version has no calibration profile, so its "
    "confidence is recorded but not trusted.",
    "signal_collapsed": "This model version's confidence signal has collapsed (no longer "
    "separates right from wrong).",
    "profile_allows_no_auto_action": "This model version's profile allows no automatic action.",
    "low_confidence": "Calibrated confidence below the auto-action threshold ({}).",
}


def reason_text(code: str) -> str:
    name, _, detail = code.partition(":")
    template = REASONS.get(name)
    if template is None:
        return code  # a reason newer than this table: shown as the code, not hidden
    return template.format(detail) if "{}" in template else template


def strength_of(match: Match) -> Strength:
    """Verbatim or normalised is strong, a copying slip is weak; a `strength` field wins."""
    strength = getattr(match, "strength", None)  # added by the graded-match work
    if strength in ("strong", "weak"):
        return "strong" if strength == "strong" else "weak"
    return "weak" if match.method == "fuzzy" else "strong"


@dataclass(frozen=True)
class QuoteView:
    id: str
    quote: str
    match: Match | None
    strength: Strength | None
    found: str  # content[start:end]: what is highlighted, which a fuzzy match may alter


@dataclass(frozen=True)
class FindingView:
    index: int
    finding: FindingReport
    quotes: list[QuoteView]
    rule_title: str | None
    rule_text: str | None

    @property
    def flags(self) -> list[str]:
        out = []
        if not self.finding.citation.exists:
            nearest = ", ".join(self.finding.citation.nearest) or "none"
            out.append(f"Rule {self.finding.rule_id} does not exist (nearest: {nearest}).")
        missing = sum(q.match is None for q in self.quotes)
        if missing:
            out.append(f"{missing} quote(s) not found in the content.")
        if not self.quotes and self.finding.verdict:
            out.append("No quote was given.")
        return out


@dataclass(frozen=True)
class ItemView:
    entry: ReviewEntry
    segments: list[Segment]
    findings: list[FindingView]
    reasons: list[str]
    profile: str
    policy_note: str | None
    policies: PolicySet

    @property
    def decision(self) -> Decision:
        return self.entry.decision

    @property
    def confirmable(self) -> list[str]:
        return confirmable_rules(self.decision, self.policies)


def confirmable_rules(decision: Decision, policies: PolicySet) -> list[str]:
    """Rules "confirm" labels the item with: those of the violations citing a real rule."""
    return list(
        dict.fromkeys(f.rule_id for f in decision.findings if f.verdict and f.rule_id in policies)
    )


def item_view(entry: ReviewEntry, policies: PolicySet) -> ItemView:
    text = entry.item.text
    highlights: list[Highlight] = []
    findings: list[FindingView] = []
    for i, finding in enumerate(entry.decision.findings):
        quotes = []
        for j, verdict in enumerate(finding.quotes):
            m = verdict.match
            strength = strength_of(m) if m is not None else None
            if m is not None and strength is not None:
                highlights.append(Highlight(m.start, m.end, strength, i, j))
            quotes.append(
                QuoteView(
                    id=f"{i}.{j}",
                    quote=verdict.quote,
                    match=m,
                    strength=strength,
                    found=text[m.start : m.end] if m is not None else "",
                )
            )
        rule = policies.rule(finding.rule_id)
        findings.append(
            FindingView(
                index=i,
                finding=finding,
                quotes=quotes,
                rule_title=rule.title if rule else None,
                rule_text=rule.text if rule else None,
            )
        )
    decision = entry.decision
    profile = (
        f"profile {decision.profile_id}"
        if decision.profile_id
        else "no profile for this model version"
    )
    policy_note = None
    if decision.policy_version != policies.version:
        policy_note = (
            f"Decided on policy version {decision.policy_version}; rule texts shown are from "
            f"the current version {policies.version}."
        )
    return ItemView(
        entry=entry,
        segments=segments(text, highlights),
        findings=findings,
        reasons=[reason_text(r) for r in decision.reasons],
        profile=profile,
        policy_note=policy_note,
        policies=policies,
    )
