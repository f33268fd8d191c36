"""Reading JSONL: every bad line is named and explained, and the rest still flows."""

from __future__ import annotations

from pipeline.inputs import InputProblem, parse_lines
from pipeline.models import ContentItem


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
