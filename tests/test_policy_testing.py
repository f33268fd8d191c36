"""`pipeline.policies.testing`: which Decision passes which example, and the reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.models import (
    CitationCheck,
    Decision,
    ErrorInfo,
    FindingReport,
    Match,
    Outcome,
    QuoteVerdict,
)
from pipeline.policies import PolicySet, load_policies
from pipeline.policies.testing import Case, Report, Result, cases, judge

PROSE = Path(__file__).parent / "fixtures" / "policies" / "prose"


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies(PROSE)


def finding(rule_id: str, *, grounded: bool = True, exists: bool = True) -> FindingReport:
    match = Match(start=0, end=5, score=100.0, method="exact") if grounded else None
    return FindingReport(
        rule_id=rule_id,
        verdict=True,
        explanation="",
        quotes=[QuoteVerdict(quote="words", match=match)],
        citation=CitationCheck(rule_id=rule_id, exists=exists),
    )


def decision(*findings: FindingReport, outcome: Outcome = "human_review") -> Decision:
    return Decision(
        item_id="x",
        outcome=outcome,
        findings=list(findings),
        model="m",
        policy_version="v",
        errors=[ErrorInfo(kind="llm_error", message="down", stage="llm")]
        if outcome == "error"
        else [],
    )


VIOLATES = Case("GH2.a/violates/1", "GROUP_HATE", "GH2.a", "我恨女人。", "violates")
ALLOWED = Case("GROUP_HATE/allowed/1", "GROUP_HATE", None, "أنا مرأة.", "allowed")


class TestJudge:
    @pytest.mark.parametrize(
        ("case", "made", "passed", "detail"),
        [
            (VIOLATES, decision(finding("GH2.a")), True, "with grounded quotes"),
            (VIOLATES, decision(finding("GH2.a", grounded=False)), False, "a quote is not in it"),
            (VIOLATES, decision(finding("GH3.a")), False, "flagged under GH3.a instead"),
            (VIOLATES, decision(outcome="no_violation"), False, "not flagged"),
            (VIOLATES, decision(outcome="error"), False, "the pipeline failed (llm_error)"),
            (ALLOWED, decision(outcome="no_violation"), True, "not flagged"),
            (ALLOWED, decision(finding("GH4.b")), False, "flagged under GH4.b"),
            (ALLOWED, decision(finding("SPAM.9", exists=False)), True, "not flagged"),
            (ALLOWED, decision(finding("SPAM.1")), True, "not flagged"),
        ],
    )
    def test_judge(
        self, policies: PolicySet, case: Case, made: Decision, passed: bool, detail: str
    ) -> None:
        """A violation needs a grounded finding under its own rule; allowed content none
        under its policy (another policy's rule, SPAM.1 here, is that policy's business)."""
        spam = next(p for p in load_policies().policies if p.id == "SPAM")
        with_spam = PolicySet(policies=(*policies.policies, spam))
        result = judge(case, made, with_spam)
        assert (result.passed, detail in result.detail) == (passed, True)


class TestCases:
    def test_every_example_once(self, policies: PolicySet) -> None:
        """Each violating, non-violating and allowed example is one case with a unique id."""
        made = cases(policies)
        policy = policies.policies[0]
        violating = sum(len(rule.violating) for rule in policy.rules)
        assert len(made) == violating + len(policy.allowed)
        assert len({case.id for case in made}) == len(made)
        assert made[-1] == Case(
            "GROUP_HATE/allowed/7",
            "GROUP_HATE",
            None,
            "انا عايز ابقى واضح: انا ما بكرهش النساء.",
            "allowed",
        )


class TestReport:
    def test_lines_and_junit(self, tmp_path: Path) -> None:
        """Hostile example text is escaped in the lines and the XML; counts agree."""
        hostile = Case("GH2.a/violates/2", "GROUP_HATE", "GH2.a", "kill \x1b[2J\u202e", "violates")
        report = Report([Result(VIOLATES, True, "ok"), Result(hostile, False, "not flagged")])
        lines = report.lines()
        assert lines[1] == "FAIL  GH2.a/violates/2  'kill \\u001b[2J\\u202e'  -> not flagged"
        assert "GH2.a: 1/2 passed  FAILED" in lines
        assert lines[-1] == "1 passed, 1 failed"
        path = tmp_path / "junit.xml"
        report.write_junit(path, "t")
        text = path.read_text(encoding="utf-8")
        assert "\x1b" not in text
        root = ET.fromstring(text)  # noqa: S314 - our own report, just written
        (suite,) = root
        assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
