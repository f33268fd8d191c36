"""Scores of a moderation run against a golden set: pure functions of labels and Decisions.

Definitions (the report uses exactly these):

- Item verdict (the pipeline's): an item is predicted a violation when it has at least one
  VALID violation (verdict true, every quote grounded, the cited rule exists), which is what
  routing treats as a violation; a suppressed item counts as predicted clean. Error
  Decisions (no verdict) are left out of every rate and counted under `errors`.
- Per rule R: predicted when the item has a valid violation citing R; gold when R is among
  the label's rule_ids. Support is the number of gold items for R.
- Grounding rate: share of all quotes, over every finding, that code located in the content.
- Hallucinated-rule rate: share of all findings citing a rule id the policy set lacks.
- Confidence signal. Unit: each finding with verdict true that is valid and has a p_true,
  i.e. a violation that routing could auto-action. Label: 1 when the gold label is a
  violation and the finding's rule id (trimmed) is among the gold rule_ids, else 0.
  Verdict-false findings are not units: their p_true is near 0 by construction, and mixing
  them in would make even a collapsed signal (every violation at p = 1) look informative.
  Invalid findings are not units either: they are never auto-actioned whatever p says. A
  violation the model missed has no finding and so no unit; it shows in recall.
- Fallback: the same units, scored by `fallback_confidence` where the item was sampled.
  Extra calls per item = fallback HTTP calls / items run (items that were not sampled
  count as 0).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from pipeline.calibration import precision_coverage, roc_auc
from pipeline.golden import GoldenItem
from pipeline.models import Decision, FindingReport, Frozen


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


class BinaryScore(Frozen):
    tp: int
    fp: int
    fn: int
    tn: int
    accuracy: float | None
    precision: float | None
    recall: float | None

    @classmethod
    def of(cls, tp: int, fp: int, fn: int, tn: int) -> BinaryScore:
        return cls(
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
            accuracy=_ratio(tp + tn, tp + fp + fn + tn),
            precision=_ratio(tp, tp + fp),
            recall=_ratio(tp, tp + fn),
        )


class FallbackStats(Frozen):
    sampled_items: int = Field(description="Items the fallback sampled (paid an extra call).")
    share_sampled: float | None
    extra_calls: int
    extra_calls_per_item: float | None = Field(description="Fallback calls / items run.")
    reasons: dict[str, int]
    failed: int = Field(description="Sampled items whose extra call failed.")
    units: int = Field(description="Signal units that carry a fallback confidence.")
    auc: float | None = Field(description="ROC-AUC of fallback confidence on those units.")


class Scores(Frozen):
    items: int = Field(description="Golden items with a Decision.")
    scored: int = Field(description="Of those, with a verdict (not an error Decision).")
    errors: dict[str, int]
    item: BinaryScore
    per_rule: dict[str, BinaryScore]
    findings: int
    quotes: int
    grounded_quotes: int
    grounding_rate: float | None
    hallucinated_rules: int
    hallucinated_rule_rate: float | None
    signal_units: int
    violations_without_signal: int = Field(
        description="Valid violations with no p_true (no logprobs): not signal units."
    )
    fallback: FallbackStats
    served_versions: dict[str, int] = Field(description="'served_model|fingerprint' -> items.")


@dataclass
class SignalUnits:
    """The confidence signal's units (see module docstring) as parallel lists."""

    p: list[float] = field(default_factory=list)
    y: list[int] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    rule_ids: list[str] = field(default_factory=list)
    fallback: list[float | None] = field(default_factory=list)


def is_real(finding: FindingReport, item: GoldenItem) -> bool:
    """The label of a unit: the gold item violates the rule this finding cites."""
    return item.label.violation and finding.rule_id.strip() in item.label.rule_ids


def signal_units(items: Sequence[GoldenItem], decisions: Mapping[str, Decision]) -> SignalUnits:
    units = SignalUnits()
    for item in items:
        decision = decisions.get(item.id)
        if decision is None:
            continue
        for f in decision.findings:
            if f.verdict and f.valid and f.p_true is not None:
                units.p.append(f.p_true)
                units.y.append(int(is_real(f, item)))
                units.item_ids.append(item.id)
                units.rule_ids.append(f.rule_id.strip())
                units.fallback.append(f.fallback_confidence)
    return units


def _valid_rules(decision: Decision) -> set[str]:
    return {f.rule_id.strip() for f in decision.findings if f.verdict and f.valid}


def _per_rule(
    pairs: Sequence[tuple[GoldenItem, Decision]], rules: set[str]
) -> dict[str, BinaryScore]:
    out: dict[str, BinaryScore] = {}
    for rule in sorted(rules):
        c: Counter[str] = Counter()
        for item, decision in pairs:
            gold = rule in item.label.rule_ids
            pred = rule in _valid_rules(decision)
            c["tp" if gold and pred else "fp" if pred else "fn" if gold else "tn"] += 1
        out[rule] = BinaryScore.of(c["tp"], c["fp"], c["fn"], c["tn"])
    return out


def _fallback(decisions: Sequence[Decision], units: SignalUnits) -> FallbackStats:
    sampled = [d for d in decisions if d.fallback is not None]
    calls = sum(d.usage.sample_calls for d in decisions)
    scored = [(p, y) for p, y in zip(units.fallback, units.y, strict=True) if p is not None]
    auc = roc_auc([p for p, _ in scored], [y for _, y in scored]) if scored else None
    return FallbackStats(
        sampled_items=len(sampled),
        share_sampled=_ratio(len(sampled), len(decisions)),
        extra_calls=calls,
        extra_calls_per_item=calls / len(decisions) if decisions else None,
        reasons=dict(Counter(d.fallback.reason for d in sampled if d.fallback)),
        failed=sum(1 for d in sampled if d.fallback and d.fallback.error),
        units=len(scored),
        auc=auc,
    )


@dataclass(frozen=True)
class CoveragePoint:
    """Auto-actioning the most confident units down to `threshold` covers `coverage`."""

    target: float
    coverage: float
    precision: float
    threshold: float


def precision_at_coverage(p: Sequence[float], y: Sequence[int], target: float) -> CoveragePoint:
    """Precision of the most confident units covering at least `target` of them.

    Units tied on p cannot be split by a threshold, so the point reached is the first with
    coverage >= target: for a collapsed signal (all p = 1) that is the whole set.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError("coverage must be in (0, 1]")
    curve = precision_coverage(p, y)
    i = int(np.searchsorted(curve.coverage, target - 1e-12))
    i = min(i, curve.coverage.size - 1)
    return CoveragePoint(
        target=target,
        coverage=float(curve.coverage[i]),
        precision=float(curve.precision[i]),
        threshold=float(curve.thresholds[i]),
    )


def score(items: Sequence[GoldenItem], decisions: Mapping[str, Decision]) -> Scores:
    """Every rate of the module docstring, for the golden items that have a Decision."""
    ran = [(item, decisions[item.id]) for item in items if item.id in decisions]
    pairs = [(i, d) for i, d in ran if d.outcome != "error"]
    errors = Counter(
        d.errors[0].kind if d.errors else "error" for _, d in ran if d.outcome == "error"
    )
    c: Counter[str] = Counter()
    for item, decision in pairs:
        gold, pred = item.label.violation, bool(_valid_rules(decision))
        c["tp" if gold and pred else "fp" if pred else "fn" if gold else "tn"] += 1
    findings = [f for _, d in pairs for f in d.findings]
    quotes = [q for f in findings for q in f.quotes]
    grounded = sum(q.grounded for q in quotes)
    hallucinated = sum(not f.citation.exists for f in findings)
    units = signal_units([i for i, _ in pairs], {d.item_id: d for _, d in pairs})
    rules = {r for i, _ in pairs for r in i.label.rule_ids} | {
        r for _, d in pairs for r in _valid_rules(d)
    }
    versions = Counter(f"{d.served_model}|{d.system_fingerprint or '-'}" for _, d in pairs)
    return Scores(
        items=len(ran),
        scored=len(pairs),
        errors=dict(errors),
        item=BinaryScore.of(c["tp"], c["fp"], c["fn"], c["tn"]),
        per_rule=_per_rule(pairs, rules),
        findings=len(findings),
        quotes=len(quotes),
        grounded_quotes=grounded,
        grounding_rate=_ratio(grounded, len(quotes)),
        hallucinated_rules=hallucinated,
        hallucinated_rule_rate=_ratio(hallucinated, len(findings)),
        signal_units=len(units.p),
        violations_without_signal=sum(
            1 for f in findings if f.verdict and f.valid and f.p_true is None
        ),
        fallback=_fallback([d for _, d in ran], units),
        served_versions=dict(versions),
    )
