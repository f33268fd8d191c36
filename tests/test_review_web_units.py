"""The review app's parts without HTTP: segments, agreement, reasons, export, accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
from argon2 import PasswordHasher
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.golden import GoldenItem
from pipeline.models import Match
from tests.fixtures_review_web import make_flagged
from workers.review_export import golden_from_reviews
from workers.review_queue import LabelledExample, Resolution
from workers.review_web.agreement import agreement_by_version, cohen_kappa, throughput
from workers.review_web.highlight import Highlight, segments
from workers.review_web.users import UserStore
from workers.review_web.views import reason_text, strength_of

pytest_plugins = ["tests.fixtures_workers", "tests.fixtures_review_web"]


@st.composite
def text_and_highlights(draw: st.DrawFn) -> tuple[str, list[Highlight]]:
    text = draw(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
    n = len(text)
    spans = draw(st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=6))
    return text, [
        Highlight(min(a, b), max(a, b), draw(st.sampled_from(["strong", "weak"])), i, 0)
        for i, (a, b) in enumerate(spans)
    ]


class TestSegments:
    @given(text_and_highlights())
    def test_segments_rebuild_text_and_each_highlight(
        self, case: tuple[str, list[Highlight]]
    ) -> None:
        """Segments join back to the content, and each highlight's segments to its span."""
        text, highlights = case
        parts = segments(text, highlights)
        assert "".join(p.text for p in parts) == text
        for h in highlights:
            mine = "".join(p.text for p in parts if f"{h.finding}.{h.quote}" in p.quotes)
            assert mine == text[h.start : h.end]

    def test_strong_wins_over_weak(self) -> None:
        """Where a verbatim and a weaker highlight overlap, the overlap shows as verbatim."""
        parts = segments("abcdef", [Highlight(0, 4, "weak", 0, 0), Highlight(2, 6, "strong", 1, 0)])
        assert [(p.text, p.strength) for p in parts] == [
            ("ab", "weak"),
            ("cd", "strong"),
            ("ef", "strong"),
        ]

    @pytest.mark.parametrize(
        ("char", "codepoint"),
        [
            ("\u202e", "U+202E"),
            ("\u200b", "U+200B"),
            ("\x1b", "U+001B"),
            ("\u2066", "U+2066"),
            ("\U000e0041", "U+E0041"),  # a tag character, outside the BMP
        ],
    )
    def test_invisible_characters_stand_alone(self, char: str, codepoint: str) -> None:
        """Bidi overrides, zero-width and control characters get a segment (and badge) each."""
        parts = segments(f"a{char}b", [])
        assert [(p.text, p.invisible, p.codepoint) for p in parts] == [
            ("a", False, ""),
            (char, True, codepoint),
            ("b", False, ""),
        ]

    def test_layout_characters_stay_text(self) -> None:
        """Newlines and tabs are layout, not badges."""
        assert len(segments("a\nb\tc\r\n", [])) == 1

    def test_highlight_past_the_end_is_clipped(self) -> None:
        """A span beyond the content (a stale Decision) is cut to the content."""
        parts = segments("abc", [Highlight(1, 10, "strong", 0, 0)])
        assert [p.text for p in parts] == ["a", "bc"]


class TestStrength:
    @pytest.mark.parametrize(
        ("method", "strength"), [("exact", "strong"), ("normalized", "strong"), ("fuzzy", "weak")]
    )
    def test_by_method(self, method: str, strength: str) -> None:
        """Verbatim and normalised matches are strong; fuzzy ones weak."""
        match = Match.model_validate({"start": 0, "end": 1, "score": 90, "method": method})
        assert strength_of(match) == strength


class TestReasons:
    @pytest.mark.parametrize(
        ("code", "text"),
        [
            ("no_calibration_profile", "This model version has no calibration profile"),
            ("hallucinated_rule:FOO.1", "The model cited FOO.1, a rule that does not exist."),
            ("low_confidence:0.7<0.95", "(0.7<0.95)"),
            ("slip_grounding:HATE.1", "The quotes for HATE.1 differ from the content by copying"),
            ("something_new:x", "something_new:x"),
        ],
    )
    def test_plain_words(self, code: str, text: str) -> None:
        """Routing reasons read as sentences; an unknown one is shown as its code."""
        assert text in reason_text(code)


class TestKappa:
    def test_perfect_agreement(self) -> None:
        """Raters who always agree (with more than one label) have kappa 1."""
        assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == 1.0

    def test_textbook_example(self) -> None:
        """Wikipedia's example: 50 items, 20 yes/yes, 15 no/no: kappa 0.4."""
        a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
        b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
        assert cohen_kappa(a, b) == pytest.approx(0.4)

    def test_undefined(self) -> None:
        """No items, or both raters always giving one same label: undefined, not 0 or 1."""
        assert cohen_kappa([], []) is None
        assert cohen_kappa(["a", "a"], ["a", "a"]) is None

    def test_unequal_lengths_refused(self) -> None:
        """Two raters must label the same items."""
        with pytest.raises(ValueError, match="same items"):
            cohen_kappa(["a"], [])


def labelled(
    item_id: str,
    *,
    violation: bool,
    rules: list[str] | None = None,
    reviewer: str = "r1",
    second: bool = False,
    model: str = "sim-model",
    at: datetime | None = None,
) -> LabelledExample:
    decision, item = make_flagged(
        item_id, "you worthless idiot", [("HARASSMENT.1", ["worthless idiot"])], model=model
    )
    return LabelledExample(
        stream_id="0-1",
        key=decision.key + ("#2" if second else ""),
        resolution=Resolution(
            violation=violation,
            rule_ids=rules if rules is not None else (["HARASSMENT.1"] if violation else []),
            reviewer=reviewer,
            resolved_at=at or datetime.now(UTC),
        ),
        decision=decision,
        item=item,
    )


class TestAgreement:
    def test_per_version(self) -> None:
        """Reviewer pairs and model-vs-reviewer are counted per model version."""
        examples = [
            labelled("a", violation=True),
            labelled("a", violation=True, reviewer="r2", second=True),
            labelled("b", violation=False),
            labelled("c", violation=True, model="other"),
        ]
        [other, sim] = agreement_by_version(examples)
        assert (other.model, len(other.reviewer_pairs), other.model_agreement) == ("other", 0, 1.0)
        assert sim.reviewer_pairs == [("HARASSMENT.1", "HARASSMENT.1")]
        assert sim.model_vs_reviewer == [(True, True), (True, False)]
        assert sim.model_agreement == 0.5

    def test_throughput_windows(self) -> None:
        """Throughput counts the last hour, the last day and all time per reviewer."""
        now = datetime.now(UTC)
        examples = [
            labelled("a", violation=False, at=now - timedelta(minutes=5)),
            labelled("b", violation=False, at=now - timedelta(hours=5)),
            labelled("c", violation=False, at=now - timedelta(days=5)),
        ]
        [row] = throughput(examples, now)
        assert (row.reviewer, row.last_hour, row.last_day, row.total) == ("r1", 1, 2, 3)


class TestGoldenExport:
    def test_labels_and_quotes(self) -> None:
        """Each reviewed item becomes a golden item with the reviewer's label and the quotes
        of the confirmed rule as they stand in the content."""
        export = golden_from_reviews(
            [labelled("a", violation=True), labelled("b", violation=False)]
        )
        a, b = export.items
        assert a.label.rule_ids == ["HARASSMENT.1"]
        assert a.label.quotes == ["worthless idiot"]
        assert not b.label.violation
        assert b.label.quotes == []
        GoldenItem.model_validate(a.model_dump())  # the golden set's own checks pass

    def test_disagreement_left_out_and_named(self) -> None:
        """An item two reviewers labelled differently has no single truth: named, not kept."""
        export = golden_from_reviews(
            [labelled("a", violation=True), labelled("a", violation=False, second=True)]
        )
        assert export.items == []
        assert export.left_out == [("a", "reviewers disagree: HARASSMENT.1 vs no violation")]

    def test_per_model(self) -> None:
        """--model keeps the items that model version flagged."""
        export = golden_from_reviews(
            [labelled("a", violation=True), labelled("b", violation=True, model="other")],
            model="other",
        )
        assert [i.id for i in export.items] == ["b"]


class TestUsers:
    @pytest.fixture
    def store(self, redis_client: redis.Redis, namespace: str) -> UserStore:
        return UserStore(redis_client, namespace, PasswordHasher(time_cost=1, memory_cost=64))

    def test_password_stored_as_argon2id(self, store: UserStore) -> None:
        """The password is kept only as an argon2id hash."""
        store.add("rita", "a long enough secret", "reviewer")
        stored = store.redis.hget(store.prefix + "rita", "password")
        assert stored.startswith("$argon2id$")
        assert "a long enough secret" not in stored
        assert store.verify("rita", "a long enough secret") is not None

    @pytest.mark.parametrize(
        ("name", "password", "role", "problem"),
        [
            ("bad name!", "a long enough secret", "reviewer", "user name"),
            ("rita", "short", "reviewer", "at least 10 characters"),
            ("rita", "a long enough secret", "root", "role"),
        ],
    )
    def test_bad_accounts_refused(
        self, store: UserStore, name: str, password: str, role: str, problem: str
    ) -> None:
        """A bad name, short password or unknown role is refused with what is wrong."""
        with pytest.raises(ConfigError, match=problem):
            store.add(name, password, role)  # type: ignore[arg-type]

    def test_lock_grows_and_clears(self, store: UserStore) -> None:
        """Failures past the free ones lock the name, longer each time; success clears it."""
        store.add("rita", "a long enough secret", "reviewer")
        for _ in range(3):
            store.verify("rita", "wrong")
        first = store.locked_for_s("rita")
        store.verify("rita", "wrong")
        assert 0 < first < store.locked_for_s("rita") <= 2
        store.redis.delete(store.lock_prefix + "rita")
        assert store.verify("rita", "a long enough secret") is not None
        assert store.redis.get(store.fails_prefix + "rita") is None
