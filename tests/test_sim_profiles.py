"""Behaviour profiles as a client observes them over HTTP."""

from __future__ import annotations

import math

import numpy as np
import openai
import pytest

from pipeline.calibration.metrics import roc_auc
from pipeline.grounding import locate
from pipeline.policies import load_policies
from pipeline.prompt import build_messages
from pipeline.schema import ModerationResult
from pipeline.sim.classifier import judge
from pipeline.sim.golden import LabelledItem, generate
from pipeline.sim.profiles import SNAPSHOT, resolve
from pipeline.sim.reader import read
from pipeline.sim.responder import overconfident
from pipeline.sim.seeding import digest

POLICIES = load_policies()
RULES = read(build_messages("x", POLICIES)).rules
VERDICTS = (" true", " false")


def golden(n: int, seed: int = 7) -> list[LabelledItem]:
    return list(generate(POLICIES.rules, n, seed=seed))


def verdict_tokens(completion: openai.types.ChatCompletion) -> list[tuple[bool, float, float]]:
    """(verdict, chosen logprob, best alternative logprob) of each verdict token."""
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    out = []
    for entry in logprobs.content or []:
        if entry.token in VERDICTS:
            others = [a.logprob for a in entry.top_logprobs if a.token != entry.token]
            alternative = max(others, default=-math.inf)
            out.append((entry.token == VERDICTS[0], entry.logprob, alternative))
    return out


def run(
    base_url: str, model: str, items: list[LabelledItem], k: int = 2
) -> list[openai.types.ChatCompletion]:
    """Each item through the SDK at temperature 0 with `k` top logprobs."""
    client = openai.OpenAI(base_url=base_url, api_key="sim", max_retries=0)
    return [
        client.chat.completions.create(
            model=model,
            messages=build_messages(item.text, POLICIES),
            logprobs=True,
            top_logprobs=k,
            temperature=0,
        )
        for item in items
    ]


class TestResolve:
    @pytest.mark.parametrize(
        ("name", "style", "hallucinating"),
        [
            ("sim-calibrated", "calibrated", False),
            ("sim-collapsed", "collapsed", False),
            ("sim-calibrated+hallucinating", "calibrated", True),
            ("sim-collapsed+hallucinating", "collapsed", True),
            (f"sim-collapsed-{SNAPSHOT}", "collapsed", False),
        ],
    )
    def test_names_select_profiles(self, name: str, style: str, hallucinating: bool) -> None:
        """A base name plus '+' modifiers selects the behaviour."""
        profile = resolve(name)
        assert profile is not None
        assert (profile.logprobs, profile.hallucinating) == (style, hallucinating)

    @pytest.mark.parametrize(
        "name", ["gpt-4o", "sim-calibrated+psychic", "sim-collapsed+hallucinating+hallucinating"]
    )
    def test_unknown_names_select_nothing(self, name: str) -> None:
        """Unknown bases or modifiers, or a repeated modifier, are no profile."""
        assert resolve(name) is None


class TestCollapsed:
    def test_every_token_at_zero_and_alternatives_far_below(self, sim_server: str) -> None:
        """The GPT-4.1-mini case: logprob 0.0 everywhere, alternatives at -20 or below."""
        for completion in run(sim_server, "sim-collapsed", golden(10)):
            logprobs = completion.choices[0].logprobs
            assert logprobs is not None
            for entry in logprobs.content or []:
                assert entry.logprob == 0.0
                others = [a.logprob for a in entry.top_logprobs if a.token != entry.token]
                assert all(lp <= -20 for lp in others)

    def test_same_verdicts_as_calibrated(self, sim_server: str) -> None:
        """Collapse changes the reported logprobs, not what the model says."""
        items = golden(12)
        collapsed = run(sim_server, "sim-collapsed", items)
        calibrated = run(sim_server, "sim-calibrated", items)
        for one, other in zip(collapsed, calibrated, strict=True):
            assert one.choices[0].message.content == other.choices[0].message.content


class TestCalibrated:
    def test_verdict_probabilities_track_correctness(self, sim_server: str) -> None:
        """Verdict-token probabilities vary and rank right verdicts above wrong ones."""
        # Hard items only: clear ones are nearly always right, and 100 hard items hold as many
        # wrong verdicts as several hundred mixed ones.
        items = [i for i in golden(600) if i.meta["kind"] in ("hard_violation", "mention")][:100]
        p, right = [], []
        completions = run(sim_server, "sim-calibrated", items, k=1)
        for item, completion in zip(items, completions, strict=True):
            content = completion.choices[0].message.content
            assert content is not None
            findings = ModerationResult.model_validate_json(content).findings
            tokens = verdict_tokens(completion)
            assert len(tokens) == len(findings)
            for finding, (verdict, logprob, _) in zip(findings, tokens, strict=True):
                assert verdict == finding.verdict
                p.append(math.exp(logprob))
                right.append(finding.verdict == (finding.rule_id in item.label.rule_ids))
        assert len({round(x, 3) for x in p}) > 10
        assert min(p) < 0.9
        auc = roc_auc(np.array(p), np.array(right, dtype=float))
        assert auc is not None
        assert auc > 0.6

    def test_verdict_token_is_the_models_probability_made_overconfident(
        self, sim_server: str
    ) -> None:
        """The verdict token's probability is the model's, with its logit scaled up."""
        profile = resolve("sim-calibrated")
        assert profile is not None
        items = [i for i in golden(60) if i.meta["kind"] in ("hard_violation", "mention")][:8]
        for item, completion in zip(items, run(sim_server, profile.name, items), strict=True):
            judged = judge(RULES, item.text, seed=digest(0, None))
            expected = [overconfident(j.p_verdict, profile.overconfidence) for j in judged]
            observed = [math.exp(lp) for _, lp, _ in verdict_tokens(completion)]
            assert observed == pytest.approx(expected, abs=1e-5)

    def test_verdict_and_alternative_share_the_mass(self, sim_server: str) -> None:
        """The chosen verdict and the opposite one hold almost all the probability."""
        for completion in run(sim_server, "sim-calibrated", golden(20)):
            for _, chosen, alternative in verdict_tokens(completion):
                assert 0.98 < math.exp(chosen) + math.exp(alternative) <= 1.0 + 1e-9


class TestHallucinating:
    def test_share_of_bad_citations_and_quotes_follows_the_rate(self, sim_server: str) -> None:
        """About the configured 30 % of findings cite a missing rule or an ungrounded quote."""
        items = golden(100, seed=9)
        bad = total = 0
        completions = run(sim_server, "sim-calibrated+hallucinating", items)
        for item, completion in zip(items, completions, strict=True):
            content = completion.choices[0].message.content
            assert content is not None
            for finding in ModerationResult.model_validate_json(content).findings:
                total += 1
                grounded = all(locate(q, item.text) is not None for q in finding.quotes)
                bad += finding.rule_id not in POLICIES or not grounded
        assert total > 50
        assert 0.15 < bad / total < 0.45, bad / total

    def test_honest_profile_cites_real_rules_with_grounded_quotes(self, sim_server: str) -> None:
        """Without the modifier every finding is grounded and cites a real rule."""
        items = golden(25, seed=9)
        for item, completion in zip(items, run(sim_server, "sim-calibrated", items), strict=True):
            content = completion.choices[0].message.content
            assert content is not None
            for finding in ModerationResult.model_validate_json(content).findings:
                assert finding.rule_id in POLICIES
                assert all(locate(q, item.text) is not None for q in finding.quotes)
