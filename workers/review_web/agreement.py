"""Agreement: between two reviewers of the same item, and between the model and reviewers.

Both are reported per model version (model name and served model id), because a version's
calibration profile is fitted on the labels of the items that version flagged. Cohen's kappa
corrects raw agreement for the agreement two raters would reach by chance.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pipeline.models import Decision
from workers.review_queue import LabelledExample, first_review_key, is_second_review


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' labels of the same items; None when it is undefined.

    Undefined: no items, or chance agreement of 1 (both raters always gave one same label).
    """
    if len(a) != len(b):
        msg = f"two raters must label the same items: {len(a)} and {len(b)} labels"
        raise ValueError(msg)
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1.0 - expected)


def model_says_violation(decision: Decision) -> bool:
    """The model's call on an item: a violation it justified (grounded, citing a real rule)."""
    return any(f.verdict and f.valid for f in decision.findings)


def version_of(decision: Decision) -> tuple[str, str]:
    return decision.model, decision.served_model or "(not reported)"


@dataclass
class VersionAgreement:
    """Agreement figures for one model version."""

    model: str
    served_model: str
    reviewer_pairs: list[tuple[str, str]] = field(default_factory=list)
    model_vs_reviewer: list[tuple[bool, bool]] = field(default_factory=list)

    @property
    def reviewer_kappa(self) -> float | None:
        return cohen_kappa(*_columns(self.reviewer_pairs))

    @property
    def reviewer_agreement(self) -> float | None:
        return _share_equal(self.reviewer_pairs)

    @property
    def model_kappa(self) -> float | None:
        return cohen_kappa(*_columns(self.model_vs_reviewer))

    @property
    def model_agreement(self) -> float | None:
        return _share_equal(self.model_vs_reviewer)


def agreement_by_version(examples: Iterable[LabelledExample]) -> list[VersionAgreement]:
    """Reviewer-reviewer agreement on dual-reviewed items and model-reviewer agreement on all.

    The model is compared with each item's first review (a second review would count the
    item twice).
    """
    versions: dict[tuple[str, str], VersionAgreement] = {}
    first: dict[str, LabelledExample] = {}
    second: dict[str, LabelledExample] = {}
    for example in examples:
        (second if is_second_review(example.key) else first)[first_review_key(example.key)] = (
            example
        )
    for key, example in first.items():
        version = version_of(example.decision)
        stats = versions.setdefault(version, VersionAgreement(*version))
        stats.model_vs_reviewer.append(
            (model_says_violation(example.decision), example.resolution.violation)
        )
        if key in second:
            stats.reviewer_pairs.append((example.resolution.answer, second[key].resolution.answer))
    return sorted(versions.values(), key=lambda v: (v.model, v.served_model))


@dataclass(frozen=True)
class Throughput:
    reviewer: str
    last_hour: int
    last_day: int
    total: int


def throughput(examples: Iterable[LabelledExample], now: datetime) -> list[Throughput]:
    """Resolutions per reviewer in the last hour, day and overall, busiest first."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for example in examples:
        age = now - example.resolution.resolved_at
        row = counts[example.resolution.reviewer]
        row[0] += age <= timedelta(hours=1)
        row[1] += age <= timedelta(days=1)
        row[2] += 1
    rows = [Throughput(name, *row) for name, row in counts.items()]
    return sorted(rows, key=lambda t: (-t.last_day, -t.total, t.reviewer))


def _columns(pairs: Sequence[tuple[Hashable, Hashable]]) -> tuple[list[Hashable], list[Hashable]]:
    return [a for a, _ in pairs], [b for _, b in pairs]


def _share_equal(pairs: Sequence[tuple[Hashable, Hashable]]) -> float | None:
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None
