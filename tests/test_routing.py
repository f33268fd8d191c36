"""Routing: every outcome, and the invariants that protect users from bad automation."""

from __future__ import annotations

import pytest

from pipeline.config import RoutingConfig
from pipeline.models import CitationCheck, FindingReport, Match, QuoteVerdict, SlipEdit
from pipeline.routing import SignalStanding, route

CONFIG = RoutingConfig()
TRUSTED = SignalStanding(profile_id="p1", threshold=0.9)
GOOD_QUOTE = QuoteVerdict(quote="x", match=Match(start=0, end=1, score=100, method="exact"))
BAD_QUOTE = QuoteVerdict(quote="y", match=None)


def finding(
    rule: str = "HARASSMENT.1",
    *,
    verdict: bool = True,
    grounded: bool = True,
    exists: bool = True,
    confidence: float | None = 0.99,
    severity: str = "medium",
) -> FindingReport:
    return FindingReport(
        rule_id=rule,
        verdict=verdict,
        explanation="e",
        quotes=[GOOD_QUOTE if grounded else BAD_QUOTE],
        citation=CitationCheck(rule_id=rule, exists=exists),
        severity=severity,
        p_true=confidence,
        confidence=confidence,
    )


class TestOutcomes:
    @pytest.mark.parametrize(
        ("findings", "standing", "outcome", "reason"),
        [
            ([], TRUSTED, "no_violation", None),
            ([finding(verdict=False)], TRUSTED, "no_violation", None),
            ([finding()], TRUSTED, "auto_action", "confident:0.9900"),
            ([finding(grounded=False)], TRUSTED, "suppressed", "ungrounded_quote:HARASSMENT.1"),
            (
                [finding("HARASSMENT.9", exists=False)],
                TRUSTED,
                "suppressed",
                "hallucinated_rule:HARASSMENT.9",
            ),
            (
                [finding(), finding("HATE.9", exists=False)],
                TRUSTED,
                "human_review",
                "invalid_beside_valid",
            ),
            ([finding()], SignalStanding(), "human_review", "no_calibration_profile"),
            (
                [finding()],
                SignalStanding(profile_id="p", collapsed=True),
                "human_review",
                "signal_collapsed",
            ),
            (
                [finding()],
                SignalStanding(profile_id="p", threshold=None),
                "human_review",
                "profile_allows_no_auto_action",
            ),
            ([finding(confidence=0.8)], TRUSTED, "human_review", "low_confidence:0.8000<0.9500"),
            ([finding(confidence=None)], TRUSTED, "human_review", "low_confidence:0.0000<0.9500"),
            ([finding("SELF_HARM.1")], TRUSTED, "human_review", "always_review_policy:SELF_HARM.1"),
        ],
        ids=[
            "no-findings",
            "verdict-false",
            "confident",
            "ungrounded",
            "hallucinated",
            "invalid-beside-valid",
            "no-profile",
            "collapsed",
            "profile-no-threshold",
            "low-confidence",
            "no-confidence",
            "always-review",
        ],
    )
    def test_table(
        self,
        findings: list[FindingReport],
        standing: SignalStanding,
        outcome: str,
        reason: str | None,
    ) -> None:
        """Each row: the findings and the signal's standing decide the outcome and the reason."""
        routed = route(findings, standing, CONFIG)
        assert routed.outcome == outcome
        if reason is not None:
            assert reason in routed.reasons

    def test_errors_go_to_review_queue_outcome(self) -> None:
        """A failed item is an error outcome with the configured priority."""
        routed = route([], TRUSTED, CONFIG, failed=True)
        assert (routed.outcome, routed.priority) == ("error", CONFIG.error_priority)

    def test_disabled_auto_action(self) -> None:
        """With auto action off, even a confident, grounded violation is reviewed."""
        config = RoutingConfig(auto_action_enabled=False)
        assert route([finding()], TRUSTED, config).outcome == "human_review"

    def test_review_suppressed(self) -> None:
        """Suppressed items can be sent to review by config, e.g. for a QA sample."""
        config = RoutingConfig(review_suppressed=True)
        assert route([finding(grounded=False)], TRUSTED, config).outcome == "human_review"


class TestNeverAutoActioned:
    @pytest.mark.parametrize("bad", [{"grounded": False}, {"exists": False}])
    @pytest.mark.parametrize("confidence", [0.5, 0.999, 1.0])
    def test_invalid_finding_alone_never_auto(
        self, bad: dict[str, bool], confidence: float
    ) -> None:
        """An ungrounded quote or a hallucinated rule is never auto-actioned, however confident."""
        config = RoutingConfig(review_when_any_invalid=False)
        routed = route([finding(confidence=confidence, **bad)], TRUSTED, config)
        assert routed.outcome != "auto_action"

    def test_floor_applies_over_a_lenient_profile(self) -> None:
        """A profile threshold below the configured floor does not lower the bar."""
        lenient = SignalStanding(profile_id="p", threshold=0.5)
        assert route([finding(confidence=0.9)], lenient, CONFIG).outcome == "human_review"


class TestPriority:
    def test_severity_and_uncertainty_order_the_queue(self) -> None:
        """A critical unsure violation outranks a low-severity nearly sure one."""
        unsure = route([finding(severity="critical", confidence=0.6)], TRUSTED, CONFIG)
        sure = route([finding(severity="low", confidence=0.94)], TRUSTED, CONFIG)
        assert unsure.priority > sure.priority
        assert 0 <= sure.priority <= 100


class TestRuleIdWhitespace:
    def test_padded_self_harm_id_is_still_always_reviewed(self) -> None:
        """A rule id with stray spaces cannot slip past the always-review policies."""
        routed = route([finding(" SELF_HARM.1")], TRUSTED, CONFIG)
        assert routed.outcome == "human_review"


class TestWeakGrounding:
    @staticmethod
    def quoted(quote: str, *, cuts_word: bool) -> FindingReport:
        match = Match(start=0, end=len(quote), score=100, method="exact", cuts_word=cuts_word)
        return finding().model_copy(update={"quotes": [QuoteVerdict(quote=quote, match=match)]})

    def test_short_quote_inside_a_word_goes_to_review(self) -> None:
        """'ass' found only inside 'classic' is grounded, but no reason to act on its own."""
        r = route([self.quoted("ass", cuts_word=True)], TRUSTED, CONFIG)
        assert r.outcome == "human_review"
        assert "weak_grounding:HARASSMENT.1" in r.reasons

    @pytest.mark.parametrize(
        ("quote", "cuts_word"),
        [("ass", False), ("idiots", True), ("BS", False)],
        ids=["whole-word", "long-enough", "short-whole-word"],
    )
    def test_whole_words_or_longer_quotes_are_not_weak(self, quote: str, cuts_word: bool) -> None:
        assert route([self.quoted(quote, cuts_word=cuts_word)], TRUSTED, CONFIG).outcome == (
            "auto_action"
        )

    def test_one_strong_quote_is_enough_and_the_rule_can_be_off(self) -> None:
        weak = self.quoted("ass", cuts_word=True)
        strong = QuoteVerdict(
            quote="moron", match=Match(start=9, end=14, score=100, method="exact")
        )
        both = weak.model_copy(update={"quotes": [*weak.quotes, strong]})
        assert route([both], TRUSTED, CONFIG).outcome == "auto_action"
        off = RoutingConfig(weak_quote_chars=0)
        assert route([weak], TRUSTED, off).outcome == "auto_action"


class TestSlipGrounding:
    SLIP = QuoteVerdict(
        quote="you are a complete idot and a liar",
        match=Match(
            start=0,
            end=35,
            score=98.6,
            method="fuzzy",
            strength="weak",
            edits=[SlipEdit(kind="dropped", start=20, end=21, found="i", quoted="")],
        ),
    )

    def test_a_violation_resting_only_on_slips_goes_to_review(self) -> None:
        """Confident and trusted, but its only quote is a slip: review, and the reason says so."""
        weak = finding().model_copy(update={"quotes": [self.SLIP]})
        r = route([weak], TRUSTED, CONFIG)
        assert r.outcome == "human_review"
        assert "slip_grounding:HARASSMENT.1" in r.reasons

    def test_no_setting_turns_it_off(self) -> None:
        """Unlike the inside-a-word rule, slip grounding has no switch: it never auto-actions."""
        weak = finding().model_copy(update={"quotes": [self.SLIP]})
        lax = RoutingConfig(weak_quote_chars=0, auto_action_floor=0.5)
        assert route([weak], TRUSTED, lax).outcome == "human_review"

    def test_one_strong_quote_beside_a_slip_is_enough(self) -> None:
        """A verbatim quote grounds the violation; the slip beside it adds nothing against it."""
        both = finding().model_copy(update={"quotes": [self.SLIP, GOOD_QUOTE]})
        assert route([both], TRUSTED, CONFIG).outcome == "auto_action"

    def test_a_stored_fuzzy_match_reads_as_weak(self) -> None:
        """A Decision stored before matches were graded: its fuzzy matches are weak slips."""
        stored = '{"start": 0, "end": 5, "score": 97.0, "method": "fuzzy", "cuts_word": false}'
        match = Match.model_validate_json(stored)
        assert (match.strength, match.edits) == ("weak", [])
        exact = Match.model_validate_json(stored.replace("fuzzy", "exact"))
        assert exact.strength == "strong"
