"""Fallback signals: who is borderline, how agreement is counted, and the one extra call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import numpy as np
import pytest

from pipeline.agreement import (
    agreement,
    borderline_reason,
    fallback_confidence,
    finding_agreement,
    grounding_strength,
    item_agreement,
)
from pipeline.calibration import ProfileStore, build_profile
from pipeline.config import RoutingConfig, load_settings
from pipeline.errors import LLMTransientError
from pipeline.llm import LLMClient, parse_choice
from pipeline.models import CitationCheck, ContentItem, Decision, FindingReport, Match, QuoteVerdict
from pipeline.policies import load_policies
from pipeline.prompt import build_messages
from pipeline.routing import SignalStanding, route
from pipeline.runner import Moderator
from pipeline.schema import Finding, ModerationResult
from pipeline.sim.golden import generate_from_policies
from pipeline.sim.profiles import resolve
from pipeline.sim.server import SimServer
from pipeline.standing import SignalWatch

BAND = (0.05, 0.95)
TRUSTED = SignalStanding(profile_id="p1", threshold=0.9, calibrator=lambda p: p)


def finding(
    rule_id: str = "HARASSMENT.1",
    *,
    verdict: bool = True,
    exists: bool = True,
    scores: tuple[float | None, ...] = (100.0,),
    p_true: float | None = 0.99,
    confidence: float | None = 0.99,
) -> FindingReport:
    quotes = [
        QuoteVerdict(
            quote=f"q{i}",
            match=None if s is None else Match(start=0, end=1, score=s, method="exact"),
        )
        for i, s in enumerate(scores)
    ]
    return FindingReport(
        rule_id=rule_id,
        verdict=verdict,
        explanation="",
        quotes=quotes,
        citation=CitationCheck(rule_id=rule_id, exists=exists),
        severity="high",
        p_true=p_true,
        confidence=confidence,
    )


def sample(*pairs: tuple[str, bool]) -> ModerationResult:
    return ModerationResult(
        findings=[Finding(rule_id=r, quotes=["x"], explanation="", verdict=v) for r, v in pairs]
    )


class TestBorderline:
    @pytest.mark.parametrize(
        ("reports", "standing", "expected"),
        [
            ([], SignalStanding(), None),
            ([finding(verdict=False)], SignalStanding(), None),
            ([finding(exists=False)], SignalStanding(), None),
            ([finding(scores=(None,))], SignalStanding(), None),
            ([finding()], SignalStanding(), "no_calibration_profile"),
            ([finding()], SignalStanding(profile_id="p", collapsed=True), "signal_collapsed"),
            ([finding(p_true=None, confidence=None)], TRUSTED, "no_logprobs"),
            ([finding(confidence=0.5)], TRUSTED, "confidence_in_band"),
            ([finding(confidence=0.05)], TRUSTED, "confidence_in_band"),
            ([finding(confidence=0.95)], TRUSTED, None),
            ([finding(confidence=0.01)], TRUSTED, None),
            ([finding(confidence=0.99), finding("VIOLENCE.1", confidence=0.6)], TRUSTED,
             "confidence_in_band"),
        ],
    )  # fmt: skip
    def test_reason_table(
        self, reports: list[FindingReport], standing: SignalStanding, expected: str | None
    ) -> None:
        """Only items with a valid violation and an untrusted or in-band signal are sampled."""
        assert borderline_reason(reports, standing, BAND) == expected


class TestAgreement:
    def test_rule_absent_from_a_sample_counts_as_verdict_false(self) -> None:
        """A sample that never mentions the rule disagrees with a true verdict."""
        samples = [
            sample(("HARASSMENT.1", True)),
            sample((" HARASSMENT.1 ", True)),
            sample(("HARASSMENT.1", False)),
            sample(),
            sample(("VIOLENCE.1", True)),
        ]
        assert finding_agreement("HARASSMENT.1", True, samples) == pytest.approx(2 / 5)
        assert finding_agreement("HARASSMENT.1", False, samples) == pytest.approx(3 / 5)

    def test_any_true_finding_for_the_rule_makes_the_sample_true(self) -> None:
        """Two findings on one rule, one true: the sample's verdict on the rule is true."""
        samples = [sample(("HARASSMENT.1", False), ("HARASSMENT.1", True))]
        assert finding_agreement("HARASSMENT.1", True, samples) == 1.0

    def test_item_agreement_is_the_share_with_the_same_decision(self) -> None:
        """Item agreement compares violation-or-not only, whatever the rule."""
        samples = [sample(("VIOLENCE.1", True)), sample(), sample(("HARASSMENT.1", False))]
        assert item_agreement(True, samples) == pytest.approx(1 / 3)
        assert item_agreement(False, samples) == pytest.approx(2 / 3)

    def test_no_samples_means_no_agreement(self) -> None:
        """With every sample unparseable there is nothing to agree: None, not 0."""
        assert finding_agreement("HARASSMENT.1", True, []) is None
        assert item_agreement(True, []) is None

    def test_grounding_strength_averages_scores_and_counts_misses_as_zero(self) -> None:
        """Scores 100 and 90 and one ungrounded quote give (1 + 0.9 + 0) / 3."""
        report = finding(scores=(100.0, 90.0, None))
        assert grounding_strength(report) == pytest.approx(1.9 / 3)
        assert fallback_confidence(0.6, grounding_strength(report)) == pytest.approx(0.38)

    @pytest.mark.parametrize(
        ("content", "rules"),
        [
            ('{"findings": []}', []),
            ('```json\n{"findings": [{"rule_id": "A.1", "quotes": ["x"], "explanation": "",'
             ' "verdict": true}]}\n```', ["A.1"]),
            ('{"findings": [', None),
            ("I cannot help with that.", None),
            (None, None),
        ],
    )  # fmt: skip
    def test_parse_choice(self, content: str | None, rules: list[str] | None) -> None:
        """A choice parses as the schema, fenced JSON included; anything else is None."""
        parsed = parse_choice(content)
        assert (None if parsed is None else [f.rule_id for f in parsed.findings]) == rules


class TestRouting:
    def test_fallback_confidence_orders_the_queue_but_never_auto_actions(self) -> None:
        """Without a profile, agreement changes review priority only, never the outcome."""
        config = RoutingConfig()
        sure = finding(confidence=None).model_copy(update={"fallback_confidence": 1.0})
        unsure = finding(confidence=None).model_copy(update={"fallback_confidence": 0.5})
        a = route([sure], SignalStanding(), config)
        b = route([unsure], SignalStanding(), config)
        assert a.outcome == b.outcome == "human_review"
        assert b.priority > a.priority

    def test_agreement_scores_every_finding_and_records_the_item(self) -> None:
        """Two of three samples agree with a true finding: 2/3 agreement, times its grounding."""
        samples = [sample(("HARASSMENT.1", True)), sample(("HARASSMENT.1", True)), sample()]
        scored = agreement("signal_collapsed", [finding(scores=(100.0, 50.0))], samples,
                           requested=4)  # fmt: skip
        assert scored.record.samples == 3
        assert scored.record.requested == 4
        assert scored.record.agreement == pytest.approx(2 / 3)
        assert scored.reports[0].agreement == pytest.approx(2 / 3)
        assert scored.reports[0].fallback_confidence == pytest.approx(2 / 3 * 0.75)

    def test_failed_sample_call_leaves_findings_unscored(self) -> None:
        """An error instead of samples is recorded; the findings keep no agreement."""
        reports = [finding()]
        scored = agreement("no_logprobs", reports, [], requested=5,
                           error=LLMTransientError("provider answered 500"))  # fmt: skip
        assert scored.reports == reports
        assert scored.record.error == "provider answered 500"
        assert scored.record.agreement is None


class TestSampleCall:
    def test_provider_failure_is_recorded_not_raised(self) -> None:
        """A 500 on the extra call comes back as an error with its call count."""
        seen: list[dict[str, object]] = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            seen.append(json.loads(request.content))
            return httpx2.Response(500, json={"error": {"message": "boom", "type": "server_error"}})

        settings = load_settings(model="m", base_url="http://x/v1", api_key="k",
                                 max_transport_retries=0)  # fmt: skip
        client = LLMClient(settings, transport=httpx2.MockTransport(handler))
        call = client.sample(build_messages("text", load_policies()), 4, 0.7)
        assert call.error is not None
        assert call.error.kind == "llm_transient"
        assert call.usage.calls == call.usage.sample_calls == 1
        assert call.results == []
        assert seen[0]["n"] == 4
        assert seen[0]["temperature"] == 0.7
        assert seen[0]["logprobs"] is False


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


def profile_dir(model: str, informative: bool, tmp: Path) -> Path:
    """A profile for `model`'s served version: informative (identity-like) or collapsed."""
    prof = resolve(model)
    assert prof is not None
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 400) if informative else np.ones(400)
    y = (rng.uniform(size=400) < (p if informative else 0.75)).astype(int)
    built = build_profile(p, y, model=model, served_model=prof.served_model,
                          system_fingerprint=prof.fingerprint, golden_hash="t",
                          target_precision=0.9, n_bootstrap=20)  # fmt: skip
    assert built.informative is informative
    ProfileStore.save(built, tmp)
    return tmp


def moderate_all(sim: SimServer, model: str, profiles: Path, n: int) -> list[Decision]:
    settings = load_settings(model=model, base_url=sim.base_url, api_key="k",
                             fallback={"enabled": True, "n_samples": 4})  # fmt: skip
    watch = SignalWatch(ProfileStore.load(profiles))
    items = generate_from_policies(load_policies(), n, seed=21)
    with Moderator(settings, load_policies(), LLMClient(settings), watch) as mod:
        return [mod.moderate(ContentItem(id=i.id, text=i.text)) for i in items]


def has_valid_violation(d: Decision) -> bool:
    return any(f.verdict and f.valid for f in d.findings)


class TestFallbackEndToEnd:
    def test_collapsed_version_samples_every_item_with_a_valid_violation(
        self, sim: SimServer, tmp_path: Path
    ) -> None:
        """Collapsed signal: each item with a valid violation pays exactly one extra call."""
        profiles = profile_dir("sim-collapsed", informative=False, tmp=tmp_path)
        before = sim.state.stats.snapshot()["requests"]
        decisions = moderate_all(sim, "sim-collapsed", profiles, 40)
        sampled = [d for d in decisions if d.fallback is not None]
        assert [d.item_id for d in sampled] == [
            d.item_id for d in decisions if has_valid_violation(d)
        ]
        assert sim.state.stats.snapshot()["requests"] - before == 40 + len(sampled)
        for d in sampled:
            assert d.fallback is not None
            assert d.fallback.reason == "signal_collapsed"
            assert d.fallback.samples == 4
            assert d.usage.sample_calls == 1
            assert d.usage.calls == 2
            assert d.outcome != "auto_action"
            for f in d.findings:
                assert f.agreement is not None
                assert f.fallback_confidence == pytest.approx(f.agreement * grounding_strength(f))
        assert all(d.usage.sample_calls == 0 for d in decisions if d.fallback is None)

    def test_trusted_version_samples_only_the_uncertain_band(
        self, sim: SimServer, tmp_path: Path
    ) -> None:
        """Informative profile: only items whose confidence falls in the band are sampled."""
        profiles = profile_dir("sim-calibrated", informative=True, tmp=tmp_path)
        decisions = moderate_all(sim, "sim-calibrated", profiles, 40)
        for d in decisions:
            violations = [f for f in d.findings if f.verdict and f.valid]
            in_band = any(f.confidence is not None and BAND[0] <= f.confidence < BAND[1]
                          for f in violations)  # fmt: skip
            assert (d.fallback is not None) == in_band, d.item_id
        assert any(d.fallback is None and has_valid_violation(d) for d in decisions)
