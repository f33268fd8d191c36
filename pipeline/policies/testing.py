"""`quoteguard policy test`: every example of a policy set as a test case of the pipeline.

A violating example passes when its Decision has a finding under its own rule that is
valid: verdict true, every quote found in the content, the rule real. A non-violating or
allowed example passes when no rule of its policy is flagged. Running the Decisions is the
caller's job (the CLI runs them through `pipeline.batch`); this module makes the cases,
judges the Decisions and writes the JUnit XML report, with no I/O of its own besides it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.log import printable
from pipeline.models import ContentItem, Decision
from pipeline.policies.model import PolicySet

Expect = Literal["violates", "allowed"]


@dataclass(frozen=True)
class Case:
    """One example: where it is written (`rule_id`, or the policy for a policy-wide allowed
    example), what it says, and what the pipeline must make of it."""

    id: str
    policy_id: str
    rule_id: str | None
    text: str
    expect: Expect

    @property
    def group(self) -> str:
        """What the case is counted under: its rule, or its policy's allowed list."""
        return self.rule_id or f"{self.policy_id} (allowed)"

    def item(self) -> ContentItem:
        return ContentItem(id=self.id, text=self.text)


@dataclass(frozen=True)
class Result:
    case: Case
    passed: bool
    detail: str  # what happened, said for a person reading the report


def cases(policies: PolicySet) -> list[Case]:
    """Every example of the set, in file order; ids name the rule and the example's place."""
    found = []
    for policy in policies.policies:
        for rule in policy.rules:
            found += [
                Case(f"{rule.id}/violates/{n}", policy.id, rule.id, text, "violates")
                for n, text in enumerate(rule.violating, start=1)
            ]
            found += [
                Case(f"{rule.id}/allowed/{n}", policy.id, rule.id, text, "allowed")
                for n, text in enumerate(rule.non_violating, start=1)
            ]
        found += [
            Case(f"{policy.id}/allowed/{n}", policy.id, None, text, "allowed")
            for n, text in enumerate(policy.allowed, start=1)
        ]
    return found


def judge(case: Case, decision: Decision, policies: PolicySet) -> Result:
    """Whether the Decision is what the example asks for, and why not when it is not."""
    if decision.outcome == "error":
        kinds = ", ".join(error.kind for error in decision.errors) or "unknown"
        return Result(case, False, f"no verdict: the pipeline failed ({kinds})")
    flagged = [f for f in decision.findings if f.verdict]
    if case.expect == "violates":
        mine = [f for f in flagged if f.rule_id.strip() == case.rule_id]
        if any(f.valid for f in mine):
            return Result(case, True, f"flagged under {case.rule_id} with grounded quotes")
        if mine:
            return Result(case, False, f"flagged under {case.rule_id}, but a quote is not in it")
        others = sorted({f.rule_id for f in flagged})
        said = f"flagged under {', '.join(others)} instead" if others else "not flagged"
        return Result(case, False, said)
    in_policy = sorted(
        {
            f.rule_id
            for f in flagged
            if (rule := policies.rule(f.rule_id.strip())) and rule.policy_id == case.policy_id
        }
    )
    if in_policy:
        return Result(case, False, f"flagged under {', '.join(in_policy)}")
    return Result(case, True, "not flagged")


@dataclass(frozen=True)
class Report:
    results: list[Result]

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    def by_group(self) -> dict[str, tuple[int, int]]:
        """group -> (passed, total), in file order."""
        passed: Counter[str] = Counter()
        total: Counter[str] = Counter()
        for result in self.results:
            total[result.case.group] += 1
            passed[result.case.group] += result.passed
        return {group: (passed[group], total[group]) for group in total}

    def lines(self) -> list[str]:
        """Like a test runner: one line per example, one per rule, then the totals."""
        out = [
            f"{'PASS' if r.passed else 'FAIL'}  {r.case.id}  {_quote(r.case.text)}"
            + ("" if r.passed else f"  -> {r.detail}")
            for r in self.results
        ]
        out.append("")
        for group, (passed, total) in self.by_group().items():
            verdict = "ok" if passed == total else "FAILED"
            out.append(f"{group}: {passed}/{total} passed  {verdict}")
        out.append("")
        out.append(f"{len(self.results) - self.failed} passed, {self.failed} failed")
        return out

    def write_junit(self, path: Path, name: str) -> None:
        """JUnit XML, one testsuite per rule (classname) and one testcase per example."""
        root = ET.Element("testsuites", name=name)
        groups = self.by_group()
        for group, (passed, total) in groups.items():
            suite = ET.SubElement(
                root,
                "testsuite",
                name=_xml(group),
                tests=str(total),
                failures=str(total - passed),
                errors="0",
            )
            for result in (r for r in self.results if r.case.group == group):
                case = ET.SubElement(
                    suite,
                    "testcase",
                    classname=_xml(group),
                    name=_xml(f"{result.case.id} {result.case.text}"),
                )
                if not result.passed:
                    failure = ET.SubElement(case, "failure", message=_xml(result.detail))
                    failure.text = _xml(f"{result.case.expect}: {result.case.text}")
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _quote(text: str, width: int = 60) -> str:
    """An example for a terminal line: escaped (it is hostile content) and cut short."""
    shown = printable(text)
    return "'" + (shown if len(shown) <= width else shown[: width - 1] + "…") + "'"


def _xml(text: str) -> str:
    """Text XML 1.0 can carry: control characters escaped as the logs escape them."""
    return printable(text)
