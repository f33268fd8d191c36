"""Synthetic golden sets and `quoteguard sim golden`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli.sim import app
from pipeline.policies import load_policies
from pipeline.prompt import build_messages
from pipeline.sim.classifier import judge
from pipeline.sim.golden import MIX, LabelledItem, generate, read_jsonl, write_jsonl
from pipeline.sim.reader import read
from pipeline.sim.seeding import digest

POLICIES = load_policies()
DEMO = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "demo.jsonl"
RULES = read(build_messages("x", POLICIES)).rules


class TestGenerate:
    def test_same_seed_same_set(self) -> None:
        """A golden set is reproducible from (rules, n, seed)."""
        assert list(generate(POLICIES.rules, 40, seed=2)) == list(generate(POLICIES.rules, 40, 2))

    def test_different_seed_different_set(self) -> None:
        """Another seed draws another set."""
        first = [i.text for i in generate(POLICIES.rules, 40, seed=2)]
        assert first != [i.text for i in generate(POLICIES.rules, 40, seed=3)]

    def test_labels_are_consistent_with_the_text(self) -> None:
        """Violations name real rules and quote the text verbatim; the rest carry no rule."""
        for item in generate(POLICIES.rules, 300, seed=1):
            if item.label.violation:
                assert item.label.rule_ids
                assert all(rule_id in POLICIES for rule_id in item.label.rule_ids)
                assert all(quote in item.text for quote in item.label.quotes)
            else:
                assert item.label.rule_ids == []
                assert item.label.quotes == []

    def test_every_kind_appears_in_its_share(self) -> None:
        """Each kind of item appears, roughly in the configured mix."""
        kinds = Counter(str(i.meta["kind"]) for i in generate(POLICIES.rules, 600, seed=1))
        for kind, share in MIX.items():
            assert abs(kinds[kind] / 600 - share) < 0.06
        assert kinds["clean"] > 0

    def test_ids_are_unique(self) -> None:
        """Item ids are unique within a set."""
        ids = [i.id for i in generate(POLICIES.rules, 200, seed=1)]
        assert len(set(ids)) == len(ids)


class TestJsonl:
    def test_round_trip(self, tmp_path: Path) -> None:
        """Written lines read back as the same items."""
        items = list(generate(POLICIES.rules, 20, seed=1))
        path = tmp_path / "golden.jsonl"
        assert write_jsonl(items, path) == 20
        assert read_jsonl(path) == items


class TestGoldenCommand:
    def test_writes_n_labelled_lines(self, tmp_path: Path) -> None:
        """`sim golden --n 25 --seed 1 --out F` writes 25 lines in the labelled format."""
        out = tmp_path / "golden.jsonl"
        result = CliRunner().invoke(app, ["golden", "--n", "25", "--seed", "1", "--out", str(out)])
        assert result.exit_code == 0, result.output
        lines = out.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 25
        first = json.loads(lines[0])
        assert set(first) == {"id", "text", "meta", "label"}
        assert set(first["label"]) == {"violation", "rule_ids", "quotes"}
        LabelledItem.model_validate(first)

    def test_bad_policies_dir_is_a_usage_error(self, tmp_path: Path) -> None:
        """A policies directory that cannot be loaded is reported, not a traceback."""
        result = CliRunner().invoke(app, ["golden", "--policies", str(tmp_path / "missing")])
        assert result.exit_code == 2
        assert "--policies" in result.output


class TestDemoSet:
    def test_labelled_and_consistent(self) -> None:
        """The bundled demo set is 34+ labelled items whose gold quotes are in their text."""
        items = read_jsonl(DEMO)
        assert len(items) >= 34
        assert len({i.id for i in items}) == len(items)
        for item in items:
            assert all(quote in item.text for quote in item.label.quotes)
            assert all(rule_id in POLICIES for rule_id in item.label.rule_ids)
            assert item.label.violation == bool(item.label.rule_ids)

    def test_covers_every_kind_and_policy(self) -> None:
        """Clean, borderline, sim-wrong and hostile items, and a clear violation per policy."""
        items = read_jsonl(DEMO)
        kinds = {str(i.meta["kind"]) for i in items}
        assert kinds == {"clean", "clear_violation", "borderline", "sim_wrong", "hostile"}
        violated = {r.partition(".")[0] for i in items for r in i.label.rule_ids}
        assert violated == {p.id for p in POLICIES.policies}
        hostile = "".join(i.text for i in items if i.meta["kind"] == "hostile")
        for marker in ("\u202e", "\u200b", "<script>", "<<<END", "\x1b", "Ignore previous"):
            assert marker in hostile

    def test_meta_says_what_the_simulator_does(self) -> None:
        """Each item's meta.sim names the rules the default simulated model flags for it."""
        seed = digest(0, None)  # the server's default seed; the pipeline sends no seed
        for item in read_jsonl(DEMO):
            flagged = sorted(j.rule_id for j in judge(RULES, item.text, seed=seed) if j.verdict)
            said = "violation " + ", ".join(flagged) if flagged else "no violation"
            assert str(item.meta["sim"]).startswith(said), item.id
            wrong = bool(flagged) != item.label.violation
            assert ("(wrong)" in str(item.meta["sim"])) == wrong, item.id
