"""Golden sets, the Decision cache, scoring, the upgrade gate and resumable evaluation runs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.calibration import ProfileStore
from pipeline.config import load_settings
from pipeline.decision_cache import DecisionCache, item_key
from pipeline.errors import ConfigError
from pipeline.evaluation import cache_key, evaluate, run_golden
from pipeline.golden import GoldenError, GoldenItem, load_golden
from pipeline.llm import LLMClient
from pipeline.models import CitationCheck, Decision, FindingReport, Match, QuoteVerdict
from pipeline.policies import load_policies
from pipeline.runner import Moderator
from pipeline.scoring import precision_at_coverage, score, signal_units
from pipeline.sim.golden import generate_from_policies, write_jsonl
from pipeline.sim.server import SimServer
from pipeline.standing import SignalWatch
from pipeline.upgrade_gate import GateRule, gate

GOOD = {
    "id": "g1",
    "text": "You are an idiot. Nice weather.",
    "label": {"violation": True, "rule_ids": ["HARASSMENT.1"], "quotes": ["You are an idiot."]},
}


def write_lines(path: Path, *lines: object) -> Path:
    raw = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def item(item_id: str, violation: bool, *rules: str) -> GoldenItem:
    return GoldenItem.model_validate(
        {"id": item_id, "text": f"text of {item_id}",
         "label": {"violation": violation, "rule_ids": list(rules)}}
    )  # fmt: skip


def found(
    rule_id: str,
    verdict: bool = True,
    p: float | None = 0.9,
    *,
    exists: bool = True,
    grounded: bool = True,
) -> FindingReport:
    match = Match(start=0, end=1, score=100, method="exact") if grounded else None
    return FindingReport(
        rule_id=rule_id,
        verdict=verdict,
        explanation="",
        quotes=[QuoteVerdict(quote="q", match=match)],
        citation=CitationCheck(rule_id=rule_id, exists=exists),
        p_true=p,
    )


def decision(item_id: str, *findings: FindingReport, outcome: str = "human_review") -> Decision:
    return Decision.model_validate(
        {"item_id": item_id, "outcome": outcome, "findings": [f.model_dump() for f in findings],
         "model": "m", "served_model": "m-1", "system_fingerprint": "fp", "policy_version": "v"}
    )  # fmt: skip


class TestLoadGolden:
    def test_valid_file_loads_with_the_hash_of_its_bytes(self, tmp_path: Path) -> None:
        """Items load in order and golden_hash is the SHA-256 of the file."""
        clean = {"id": "g2", "text": "hi", "label": {"violation": False}}
        path = write_lines(tmp_path / "g.jsonl", GOOD, b"", clean)
        golden = load_golden(path)
        assert [i.id for i in golden.items] == ["g1", "g2"]
        assert golden.golden_hash == hashlib.sha256(path.read_bytes()).hexdigest()
        assert golden.rule_ids == {"HARASSMENT.1"}

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            (b'{"id": "x", "text": ', "malformed JSON"),
            (b'{"id": "x", "text": "caf\xe9"}', "invalid UTF-8"),
            (b"[1, 2]", "must be a JSON object"),
            ({"id": "x", "text": "t"}, "label: Field required"),
            ({"id": "x", "text": "t", "label": {"violation": True}}, "rule_ids is empty"),
            ({"id": "x", "text": "t", "label": {"violation": False, "rule_ids": ["A.1"]}},
             "violation is false but rule_ids is not empty"),
            ({**GOOD, "label": {**GOOD["label"], "quotes": ["not there"]}},
             "label.quotes[0] does not occur in text"),
            ({**GOOD, "id": ""}, "id: String should have at least 1 character"),
            ({**GOOD, "lable": {}}, "lable: Extra inputs are not permitted"),
            (GOOD, "duplicate id 'g1' (first on line 1)"),
        ],
    )  # fmt: skip
    def test_problems_name_their_line(self, tmp_path: Path, line: object, message: str) -> None:
        """Each kind of bad line is reported with its line number and what is wrong."""
        path = write_lines(tmp_path / "g.jsonl", GOOD, line)
        with pytest.raises(GoldenError) as caught:
            load_golden(path)
        assert caught.value.problems[0][0] == 2
        assert message in caught.value.problems[0][1]
        assert f"line 2: {caught.value.problems[0][1]}" in str(caught.value)

    def test_every_problem_is_reported_at_once(self, tmp_path: Path) -> None:
        """Three bad lines give three problems in one error, not one at a time."""
        path = write_lines(tmp_path / "g.jsonl", b"{", GOOD, b"[]", b"nope")
        with pytest.raises(GoldenError) as caught:
            load_golden(path)
        assert [line for line, _ in caught.value.problems] == [1, 3, 4]

    def test_empty_file_is_an_error(self, tmp_path: Path) -> None:
        """A golden set with no items cannot be evaluated."""
        path = tmp_path / "g.jsonl"
        path.write_text("\n\n")
        with pytest.raises(GoldenError, match="no items"):
            load_golden(path)

    def test_generator_output_loads(self, tmp_path: Path) -> None:
        """What `quoteguard sim golden` writes is a valid golden set."""
        path = tmp_path / "g.jsonl"
        write_jsonl(generate_from_policies(load_policies(), 50, seed=1), path)
        assert len(load_golden(path)) == 50


class TestDecisionCache:
    def test_round_trip_and_later_lines_win(self, tmp_path: Path) -> None:
        """Appended Decisions load back by key; a re-appended key keeps the last one."""
        cache = DecisionCache(tmp_path / "c.jsonl")
        with cache:
            cache.append("k1", decision("a"))
            cache.append("k1", decision("b"))
            cache.append("k2", decision("c"))
        loaded = cache.load()
        assert {k: d.item_id for k, d in loaded.items()} == {"k1": "b", "k2": "c"}

    def test_error_decisions_are_not_cached(self, tmp_path: Path) -> None:
        """An error Decision is not stored, so the next run retries the item."""
        cache = DecisionCache(tmp_path / "c.jsonl")
        with cache:
            cache.append("k1", decision("a", outcome="error"))
        assert cache.load() == {}

    def test_a_torn_last_line_is_skipped_and_not_glued_to_the_next(self, tmp_path: Path) -> None:
        """A write cut short is ignored on load, and the next append starts a fresh line."""
        path = tmp_path / "c.jsonl"
        with DecisionCache(path) as cache:
            cache.append("k1", decision("a"))
        path.write_bytes(path.read_bytes() + b'{"key": "k2", "decis')
        with DecisionCache(path) as cache:
            assert set(cache.load()) == {"k1"}
            cache.append("k3", decision("c"))
        assert set(DecisionCache(path).load()) == {"k1", "k3"}

    def test_key_changes_with_text_model_and_policy_version(self) -> None:
        """An edited text, another model or policy set each give a different key."""
        base = item_key("a", "text", "m", "v")
        others = {item_key("a", "text!", "m", "v"), item_key("a", "text", "m2", "v"),
                  item_key("a", "text", "m", "v2"), item_key("b", "text", "m", "v")}  # fmt: skip
        assert base not in others
        assert len(others) == 4


class TestScoring:
    def test_item_rule_grounding_and_hallucination_rates(self) -> None:
        """Hand-computed counts for a five-item run with every kind of finding."""
        golden = [
            item("tp", True, "A.1"),
            item("fn", True, "B.1"),
            item("fp", False),
            item("tn", False),
            item("sup", False),
            item("err", True, "A.1"),
        ]
        decisions = {
            "tp": decision("tp", found("A.1"), found("B.1", verdict=False, p=0.1)),
            "fn": decision("fn", found("B.1", grounded=False)),  # ungrounded: not a prediction
            "fp": decision("fp", found("A.1", p=0.6)),
            "tn": decision("tn"),
            "sup": decision("sup", found("X.9", exists=False)),
            "err": decision("err", outcome="error"),
        }
        s = score(golden, decisions)
        assert (s.items, s.scored, s.errors) == (6, 5, {"error": 1})
        assert (s.item.tp, s.item.fp, s.item.fn, s.item.tn) == (1, 1, 1, 2)
        assert s.item.accuracy == pytest.approx(3 / 5)
        assert s.item.precision == pytest.approx(1 / 2)
        assert s.item.recall == pytest.approx(1 / 2)
        assert (s.per_rule["A.1"].tp, s.per_rule["A.1"].fp) == (1, 1)
        assert (s.per_rule["B.1"].fn, s.per_rule["B.1"].recall) == (1, 0.0)
        assert (s.findings, s.quotes, s.grounded_quotes) == (5, 5, 4)
        assert s.grounding_rate == pytest.approx(4 / 5)
        assert s.hallucinated_rule_rate == pytest.approx(1 / 5)

    def test_signal_units_are_valid_violations_with_a_p_true(self) -> None:
        """Verdict-false, invalid and logprob-less findings are not units; labels follow gold."""
        golden = [item("a", True, "A.1"), item("b", False)]
        decisions = {
            "a": decision(
                "a",
                found("A.1", p=0.97),
                found("C.1", p=0.8),  # a real rule the gold does not list: spurious
                found("B.1", verdict=False, p=0.02),
                found("Z.1", exists=False, p=0.99),
                found("D.1", p=None),
            ),
            "b": decision("b", found(" A.1 ", p=0.7)),
        }
        units = signal_units(golden, decisions)
        assert units.p == [0.97, 0.8, 0.7]
        assert units.y == [1, 0, 0]
        assert units.rule_ids == ["A.1", "C.1", "A.1"]
        assert score(golden, decisions).violations_without_signal == 1


class TestPrecisionAtCoverage:
    def test_hand_computed_point(self) -> None:
        """Top half of [0.9, 0.8, 0.7, 0.6] with labels [1, 0, 1, 1] has precision 0.5."""
        pt = precision_at_coverage([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 1], 0.5)
        assert (pt.coverage, pt.precision, pt.threshold) == (0.5, 0.5, 0.8)

    def test_ties_overshoot_to_the_whole_group(self) -> None:
        """A collapsed signal (all p equal) can only be cut at full coverage."""
        pt = precision_at_coverage([1.0] * 4, [1, 1, 1, 0], 0.25)
        assert (pt.coverage, pt.precision) == (1.0, 0.75)


class TestUpgradeGate:
    OLD_P = [0.99, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5] * 5
    OLD_Y = [1, 1, 1, 1, 1, 0, 1, 0] * 5

    def test_same_signal_passes(self) -> None:
        """An identical new version passes with no reasons."""
        result = gate(self.OLD_P, self.OLD_Y, self.OLD_P, self.OLD_Y)
        assert result.passed
        assert result.reasons == []

    def test_collapsed_signal_fails(self) -> None:
        """Every new p at 1.0: not informative, so the gate fails naming the collapse."""
        result = gate(self.OLD_P, self.OLD_Y, [1.0] * 40, self.OLD_Y)
        assert not result.passed
        assert result.reasons[0].startswith("signal_collapsed")

    def test_precision_fall_beyond_tolerance_fails(self) -> None:
        """Precision at the chosen coverage 0.1 lower than the old one fails; within 0.2 passes."""
        worse_y = [0, 1, 1, 1, 1, 0, 1, 1] * 5
        strict = gate(self.OLD_P, self.OLD_Y, self.OLD_P, worse_y, GateRule(coverage=0.25))
        assert any(r.startswith("precision_fell") for r in strict.reasons)
        loose = gate(self.OLD_P, self.OLD_Y, self.OLD_P, worse_y,
                     GateRule(coverage=0.25, tolerance=0.6))  # fmt: skip
        assert not any(r.startswith("precision_fell") for r in loose.reasons)

    def test_no_units_fails(self) -> None:
        """A new version with no signal units at all (no logprobs) fails."""
        assert not gate(self.OLD_P, self.OLD_Y, [], []).passed


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


def moderator(sim: SimServer, model: str = "sim-calibrated") -> Moderator:
    settings = load_settings(model=model, base_url=sim.base_url, api_key="k")
    return Moderator(settings, load_policies(), LLMClient(settings), SignalWatch(ProfileStore()))


def requests(sim: SimServer) -> int:
    count: int = sim.state.stats.snapshot()["requests"]
    return count


class TestRunGolden:
    def test_interrupted_run_resumes_where_it_stopped(self, sim: SimServer, tmp_path: Path) -> None:
        """Killed after 10 Decisions, the next run calls the model only for the other 20."""
        path = tmp_path / "g.jsonl"
        write_jsonl(generate_from_policies(load_policies(), 30, seed=5), path)
        golden = load_golden(path)
        seen: list[str] = []

        def stop_after_ten(d: Decision) -> None:
            seen.append(d.item_id)
            if len(seen) == 10:
                raise KeyboardInterrupt

        with moderator(sim) as mod:
            with pytest.raises(KeyboardInterrupt):
                run_golden(mod, golden, tmp_path / "cache", concurrency=1,
                           on_decision=stop_after_ten)  # fmt: skip
            before = requests(sim)
            resumed = run_golden(mod, golden, tmp_path / "cache")
            assert (resumed.cached, resumed.fresh) == (10, 20)
            assert requests(sim) - before == 20 == resumed.calls
            again = run_golden(mod, golden, tmp_path / "cache")
        assert (again.cached, again.fresh, again.calls) == (30, 0, 0)
        assert requests(sim) - before == 20
        assert set(again.decisions) == {i.id for i in golden.items}
        assert again.served_version() == ("sim-calibrated-2026-11-01", "fp_simcal1")

    def test_unknown_gold_rule_is_refused_before_any_call(
        self, sim: SimServer, tmp_path: Path
    ) -> None:
        """Gold rule ids missing from the policy set stop the run: per-rule numbers would lie."""
        bad = {"id": "x", "text": "t", "label": {"violation": True, "rule_ids": ["NOPE.1"]}}
        golden = load_golden(write_lines(tmp_path / "g.jsonl", bad))
        before = requests(sim)
        with moderator(sim) as mod, pytest.raises(ConfigError, match=r"NOPE\.1"):
            run_golden(mod, golden, tmp_path / "cache")
        assert requests(sim) == before

    def test_cache_file_depends_on_fallback_settings(self, sim: SimServer) -> None:
        """Turning the fallback on starts another cache file; the same settings share one."""
        off = moderator(sim)
        settings = load_settings(model="sim-calibrated", base_url=sim.base_url, api_key="k",
                                 fallback={"enabled": True})  # fmt: skip
        on = Moderator(settings, off.policies, off.client, SignalWatch(ProfileStore()))
        assert cache_key(off) == cache_key(moderator(sim))
        assert cache_key(on) != cache_key(off)

    def test_cache_file_depends_on_endpoint_and_sampling(self, sim: SimServer) -> None:
        """The same model name on another endpoint, or sampled otherwise, is another cache;
        credentials in the URL are not part of the key."""
        base = moderator(sim)

        def key(**overrides: object) -> str:
            fields: dict[str, object] = {"model": "sim-calibrated", "base_url": sim.base_url}
            settings = load_settings(api_key="k", **(fields | overrides))
            return cache_key(Moderator(settings, base.policies, base.client, base.watch))

        assert key() == cache_key(base)
        assert key(base_url="http://10.0.0.9:8000/v1") != key()
        assert key(temperature=0.7) != key()
        assert key(top_logprobs=2) != key()
        with_user = sim.base_url.replace("http://", "http://reader:secret@")
        assert key(base_url=with_user) == key()
        assert key(base_url=sim.base_url + "/") == key()
        assert key(base_url=sim.base_url + "?api-version=2024-10-21") != key()

    def test_evaluate_reports_raw_metrics_and_coverage(
        self, sim: SimServer, tmp_path: Path
    ) -> None:
        """An evaluation carries the pipeline scores, both ECEs and precision at coverages."""
        path = tmp_path / "g.jsonl"
        write_jsonl(generate_from_policies(load_policies(), 60, seed=6), path)
        with moderator(sim) as mod:
            run = run_golden(mod, load_golden(path), tmp_path / "cache")
        ev = evaluate(run, n_bootstrap=50)
        (raw,) = ev.results
        assert raw.metrics.n == ev.scores.signal_units == len(ev.units.p) > 0
        assert raw.extra["ece_equal_mass"]
        assert ev.scores.items == 60
