"""Reviewers' resolutions as a golden set, so a profile can be fitted on their labels.

`quoteguard review export --golden FILE [--model NAME]` writes the JSONL that
`quoteguard eval` and `quoteguard calibrate` read (`pipeline.golden`). One golden item per
content item: its reviewers' label, with the quotes of the confirmed findings (as they stand
in the content). Restricting to one model keeps the set to the items that version flagged,
the population its calibration is about. An item whose reviewers disagree (a dual review
that did not match) has no single truth: it is left out and named, never silently merged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.golden import GoldenItem, GoldLabel
from workers.review_queue import LabelledExample


@dataclass
class GoldenExport:
    items: list[GoldenItem] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (item id, why)


def golden_from_reviews(
    examples: Iterable[LabelledExample], model: str | None = None
) -> GoldenExport:
    by_item: dict[str, list[LabelledExample]] = {}
    for example in examples:
        if model is None or example.decision.model == model:
            by_item.setdefault(example.item.id, []).append(example)
    out = GoldenExport()
    for item_id, labelled in by_item.items():
        answers = {x.resolution.answer for x in labelled}
        if len(answers) > 1:
            said = " vs ".join(sorted(answers))
            out.left_out.append((item_id, f"reviewers disagree: {said}"))
            continue
        first = labelled[0]
        if not first.item.text:
            out.left_out.append((item_id, "empty text"))
            continue
        rule_ids = sorted(set(first.resolution.rule_ids)) if first.resolution.violation else []
        out.items.append(
            GoldenItem(
                id=item_id,
                text=first.item.text,
                meta=first.item.meta,
                label=GoldLabel(
                    violation=first.resolution.violation,
                    rule_ids=rule_ids,
                    quotes=_quotes(first, rule_ids),
                ),
            )
        )
    return out


def _quotes(example: LabelledExample, rule_ids: list[str]) -> list[str]:
    """The content's own characters at each grounded quote of a confirmed rule."""
    text = example.item.text
    quotes = [
        text[q.match.start : q.match.end]
        for f in example.decision.findings
        if f.verdict and f.rule_id in rule_ids
        for q in f.quotes
        if q.match is not None
    ]
    return list(dict.fromkeys(q for q in quotes if q))
