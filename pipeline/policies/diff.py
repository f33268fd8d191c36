"""`quoteguard policy diff`: what changed between two policy sets, rule by rule.

Rules are matched by id, because ids are permanent: a rule whose id is gone was removed,
even if a new rule says the same thing. Given recorded Decisions, the diff also names the
rule ids they cite that the new set no longer has: those Decisions were judged by rules
that are gone, and calibration or review data built on them needs a look.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ValidationError

from pipeline.policies.model import Policy, PolicySet, Rule

#: Fields of a rule compared as text (examples are compared one by one).
_RULE_FIELDS = ("title", "severity", "text", "policy_id")
_EXAMPLE_LISTS = {"violating": "violating example", "non_violating": "non-violating example"}


@dataclass
class RuleChange:
    id: str
    fields: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (old, new)
    added: list[tuple[str, str]] = field(default_factory=list)  # (kind, example)
    removed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class PolicySetDiff:
    old_version: str
    new_version: str
    added: list[Rule] = field(default_factory=list)
    removed: list[Rule] = field(default_factory=list)
    changed: list[RuleChange] = field(default_factory=list)
    policies: list[RuleChange] = field(default_factory=list)  # policy-level changes

    @property
    def same(self) -> bool:
        return self.old_version == self.new_version


def diff(old: PolicySet, new: PolicySet) -> PolicySetDiff:
    """Rules added, removed and changed (fields and examples), and policy-level changes."""
    result = PolicySetDiff(old.version, new.version)
    result.added = [rule for rule in new.rules if rule.id not in old]
    result.removed = [rule for rule in old.rules if rule.id not in new]
    for rule in new.rules:
        before = old.rule(rule.id)
        if before is not None and (change := _rule_change(before, rule)) is not None:
            result.changed.append(change)
    old_policies = {policy.id: policy for policy in old.policies}
    for policy in new.policies:
        if policy.id in old_policies:
            change = _policy_change(old_policies[policy.id], policy)
            if change is not None:
                result.policies.append(change)
    return result


def _rule_change(old: Rule, new: Rule) -> RuleChange | None:
    change = RuleChange(new.id)
    for name in _RULE_FIELDS:
        if getattr(old, name) != getattr(new, name):
            change.fields[name] = (str(getattr(old, name)), str(getattr(new, name)))
    for name, kind in _EXAMPLE_LISTS.items():
        _examples(change, kind, getattr(old, name), getattr(new, name))
    return change if change.fields or change.added or change.removed else None


def _policy_change(old: Policy, new: Policy) -> RuleChange | None:
    change = RuleChange(new.id)
    for name in ("title", "description"):
        if getattr(old, name) != getattr(new, name):
            change.fields[name] = (getattr(old, name), getattr(new, name))
    _examples(change, "allowed example", old.allowed, new.allowed)
    return change if change.fields or change.added or change.removed else None


def _examples(change: RuleChange, kind: str, old: Iterable[str], new: Iterable[str]) -> None:
    before, after = list(old), list(new)
    change.added += [(kind, e) for e in after if e not in before]
    change.removed += [(kind, e) for e in before if e not in after]


@dataclass
class CitedIds:
    """Rule ids cited by recorded Decisions that the new set does not have."""

    removed: Counter[str] = field(default_factory=Counter)  # in the old set, not the new
    unknown: Counter[str] = field(default_factory=Counter)  # in neither: hallucinated
    decisions: int = 0
    problems: list[str] = field(default_factory=list)  # lines that are not Decisions


class _CitedFinding(BaseModel):
    rule_id: str


class _Cited(BaseModel):
    """The part of a recorded Decision the diff reads; other fields may be anything."""

    findings: list[_CitedFinding]


def cited_ids(path: Path, old: PolicySet, new: PolicySet) -> CitedIds:
    """Read a Decisions JSONL file; a bad line is named and skipped, the rest is read."""
    found = CitedIds()
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            # pydantic's JSON parser, not json.loads: a line nested thousands deep is a
            # bad line here, where json.loads would raise RecursionError.
            try:
                decision = _Cited.model_validate_json(raw)
            except ValidationError as exc:
                error = exc.errors(include_url=False)[0]
                where = ".".join(str(part) for part in error["loc"])
                found.problems.append(
                    f"{path}:{number}: not a Decision: {where + ': ' if where else ''}"
                    f"{error['msg']}"
                )
                continue
            found.decisions += 1
            for rule_id in (finding.rule_id.strip() for finding in decision.findings):
                if rule_id in new:
                    continue
                (found.removed if rule_id in old else found.unknown)[rule_id] += 1
    return found
