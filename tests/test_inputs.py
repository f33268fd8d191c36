"""Reading JSONL: every bad line is named and explained, and the rest still flows."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.inputs import InputProblem, parse_lines, parse_payload, safe_dump
from pipeline.models import ContentItem
from tests.hostile import DEEP, hostile_lines, shared_texts


def parse(*lines: bytes) -> list[ContentItem | InputProblem]:
    return list(parse_lines(lines, source="items.jsonl"))


class TestParseLines:
    def test_good_lines_become_items(self) -> None:
        """id, text and meta are read; unknown keys such as a golden label are ignored."""
        (item,) = parse(b'{"id": "a", "text": "hi", "meta": {"lang": "en"}, "label": {}}')
        assert item == ContentItem(id="a", text="hi", meta={"lang": "en"})

    def test_numeric_id_is_accepted_as_text(self) -> None:
        """Many exports use numeric ids; they are kept as strings."""
        (item,) = parse(b'{"id": 17, "text": "hi"}')
        assert isinstance(item, ContentItem)
        assert item.id == "17"

    def test_each_problem_names_its_line(self) -> None:
        """Invalid UTF-8, malformed JSON, a missing id and a duplicate are each reported."""
        results = parse(
            b'{"id": "a", "text": "ok"}',
            b'{"id": "b", "text": "caf\xe9"}',
            b'{"id": "c", "text": ',
            b'{"text": "no id"}',
            b'{"id": "a", "text": "again"}',
            b'["not", "an", "object"]',
            b'{"id": "d", "text": 5}',
            b'{"id": "e", "text": "fine"}',
        )
        problems = [r for r in results if isinstance(r, InputProblem)]
        assert [(p.line, p.item_id) for p in problems] == [
            (2, "items.jsonl:2"),
            (3, "items.jsonl:3"),
            (4, "items.jsonl:4"),
            (5, "items.jsonl:5"),
            (6, "items.jsonl:6"),
            (7, "d"),
        ]
        messages = [p.message for p in problems]
        assert "invalid UTF-8 at byte 24" in messages[0]
        assert messages[1].startswith("malformed JSON")
        assert "missing id" in messages[2]
        assert "duplicate id 'a' (first on line 1)" in messages[3]
        assert "text" in messages[5]
        assert [r.id for r in results if isinstance(r, ContentItem)] == ["a", "e"]

    def test_blank_lines_are_not_items(self) -> None:
        """Blank lines (a trailing newline, say) are skipped, not errors."""
        assert parse(b"", b"   \n") == []

    def test_control_characters_survive_intact(self) -> None:
        """NUL, bidi overrides and zero-width characters are content, kept byte for byte."""
        text = "a\u0000b\u202ec\u200bd"
        (item,) = parse(b'{"id": "x", "text": "a\\u0000b\\u202ec\\u200bd"}')
        assert isinstance(item, ContentItem)
        assert item.text == text


def deep_meta(depth: int) -> bytes:
    return b'{"id": "deep", "text": "hi", "meta": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


class TestHostileLines:
    @pytest.mark.parametrize(
        ("line", "item_id", "message"),
        [
            (deep_meta(100), "deep", "nested deeper than 64 levels"),
            (deep_meta(1_000), "items.jsonl:1", "nested deeper than 64 levels"),
            (b"[" * DEEP + b"]" * DEEP, "items.jsonl:1", "nested deeper than 64 levels"),
            (b'{"id": "s", "text": "a \\ud800 b"}', "s", "text has a lone surrogate"),
            (b'{"id": "x\\udfff", "text": "hi"}', "items.jsonl:1", "id has a lone surrogate"),
            (b'{"id": "m", "text": "t", "meta": {"k\\ud800": 1}}', "m", "lone surrogate"),
            (b'{"id": {"a": 1}, "text": "hi"}', "items.jsonl:1", "not an object"),
            (b'{"id": [1], "text": "hi"}', "items.jsonl:1", "not an array"),
            (b'{"id": true, "text": "hi"}', "items.jsonl:1", "not a boolean"),
            (b'{"id": 1.5, "text": "hi"}', "items.jsonl:1", "not a number"),
            (b'{"id": "", "text": "hi"}', "items.jsonl:1", "missing id"),
            (b'{"id": "t", "text": "cut sho', "items.jsonl:1", "Unterminated string"),
            (
                b'{"id": "n", "text": "hi", "meta": {"v": 1' + b"0" * 5000 + b"}}",
                "items.jsonl:1",
                "digits",
            ),
            (b'{"id": "' + b"i" * 1_001 + b'", "text": "hi"}', "items.jsonl:1", "1,001 char"),
            (b'{"id": "no-text"}', "no-text", "text: Field required"),
            (b'{"id": "meta", "text": "t", "meta": [1]}', "meta", "meta: Input should be"),
            # Python reads these; a Decision would carry null instead, without a word.
            (b'{"id": "nan", "text": "t", "meta": {"v": NaN}}', "nan", "meta.v is nan"),
            (b'{"id": "big", "text": "t", "meta": {"v": [1e999]}}', "big", "meta.v[0] is inf"),
            (b'{"id": "neg", "text": "t", "meta": {"v": -Infinity}}', "neg", "not a JSON number"),
        ],
    )
    def test_each_hostile_line_is_a_named_problem(
        self, line: bytes, item_id: str, message: str
    ) -> None:
        """Depth, surrogates, id types and truncation are named problems, never exceptions."""
        (problem,) = parse(line + b"\n")
        assert isinstance(problem, InputProblem)
        assert problem.line == 1
        assert problem.item_id == item_id
        assert message in problem.message
        # Every problem can be stored and logged: its id and message are valid Unicode.
        str(problem).encode("utf-8")

    def test_the_hostile_corpus_gives_one_entry_per_line(self) -> None:
        """Every line of the shared hostile corpus is one item or one named problem."""
        lines = hostile_lines()
        entries = parse(*lines)
        assert len(entries) == len(lines)
        for entry in entries:
            assert_storable(entry)

    def test_numeric_id_is_the_same_text_as_a_payload(self) -> None:
        """The id 42 is "42" whether it arrives as a line or as a task payload."""
        (item,) = parse(b'{"id": 42, "text": "hi"}')
        assert item == parse_payload({"id": 42, "text": "hi"}) == ContentItem(id="42", text="hi")

    def test_a_bom_does_not_refuse_the_first_line(self) -> None:
        """A UTF-8 BOM (Windows editors save one) is not part of the first item."""
        results = parse(b'\xef\xbb\xbf{"id": "a", "text": "hi"}\r\n', b'{"id": "b", "text": "x"}')
        assert [r.id for r in results if isinstance(r, ContentItem)] == ["a", "b"]

    def test_shared_data_lines_are_items(self) -> None:
        """Real multilingual, right-to-left and offensive text passes the edge unchanged."""
        texts = shared_texts(per_source=150)
        lines = [json.dumps({"id": f"d{n}", "text": t}).encode() for n, t in enumerate(texts)]
        items = parse(*lines)
        assert [i.text for i in items if isinstance(i, ContentItem)] == texts


class TestPayloads:
    @pytest.mark.parametrize(
        ("payload", "message"),
        [
            (None, "must be a JSON object"),
            (["id", "text"], "must be a JSON object"),
            ("a string", "must be a JSON object"),
            ({"id": "x", "text": "a \ud800 b"}, "text has a lone surrogate at character 2"),
            ({"id": {"nested": True}, "text": "t"}, "id must be a string or an integer"),
            ({"text": "no id"}, "missing id"),
            ({"id": "x", "text": "t", "meta": {"v": float("nan")}}, "meta.v is nan"),
        ],
    )
    def test_payload_problems_are_named(self, payload: object, message: str) -> None:
        """What a broker delivered is judged like a line: a named problem, a stable id."""
        problem = parse_payload(payload)
        assert isinstance(problem, InputProblem)
        assert message in problem.message
        assert problem == parse_payload(payload)  # a redelivery gets the same stand-in id

    def test_deep_payload_is_a_problem(self) -> None:
        """A payload nested past Python's recursion limit is refused, not a crash."""
        nested: object = "leaf"
        for _ in range(DEEP):
            nested = [nested]
        problem = parse_payload({"id": "d", "text": "t", "meta": {"x": nested}})
        assert isinstance(problem, InputProblem)
        assert problem.item_id == "d"
        assert "nested deeper" in problem.message
        assert isinstance(parse_payload(nested), InputProblem)


def nested_json() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=20,
    )


def wrapped(value: object, depth: int, as_dict: bool) -> object:
    for _ in range(depth):
        value = {"k": value} if as_dict else [value]
    return value


FIELDS = ["id", "text", "meta"]


class TestFuzz:
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=400))
    def test_arbitrary_bytes_never_raise(self, raw: bytes) -> None:
        """Any bytes give items or named problems whose ids and text every sink can store."""
        for entry in parse(raw, b'{"id": "ok", "text": "x"}' + raw):
            assert_storable(entry)

    @settings(max_examples=200, deadline=None)
    @given(
        nested_json(), st.integers(0, 3_000), st.booleans(), st.sampled_from(["id", "text", "meta"])
    )
    def test_arbitrarily_nested_json_never_raises(
        self, value: object, depth: int, as_dict: bool, field: str
    ) -> None:
        """Any JSON value at any depth, in any field, as a line or a payload, never raises."""
        deep = wrapped(value, depth, as_dict)
        record = {"id": "f", "text": "t", field: deep}
        assert_storable(parse_payload(record))
        assert_storable(parse_payload(deep))
        line = safe_dump(record).encode()
        for entry in parse(line, safe_dump(deep).encode()):
            assert_storable(entry)


def assert_storable(entry: ContentItem | InputProblem) -> None:
    if isinstance(entry, ContentItem):
        entry.model_dump_json()
    else:
        str(entry).encode("utf-8")
        assert entry.item_id
