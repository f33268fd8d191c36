"""Word boundaries by Unicode word segmentation (UAX #29), in every script of the shared data."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.grounding import locate
from pipeline.wordbreak import cuts_word, is_boundary, writes_without_spaces


class TestCutsWord:
    @pytest.mark.parametrize(
        ("content", "quote", "cut"),
        [
            ("what a classic", "ass", True),
            ("you idiot!", "idiot", False),
            ("don't stop", "don", True),  # an apostrophe between letters joins them
            ("pi is 3.14 exactly", "3.1", True),
            ("我恨女人。你好", "女人", False),  # each Han character is a word of its own
            ("我恨女人。你好", "恨女", False),
            ("انا بكره النساء.", "بكره", False),
            ("انا بكره النساء.", "بكر", True),
            ("मैं महिलाओं से नफरत करता हूँ", "महिलाओं", False),
            ("मैं महिलाओं से नफरत करता हूँ", "महिल", True),  # a vowel sign belongs to its letter
            ("e\u0301t\u00e9", "e", True),  # a combining accent belongs to its letter
            ("a  b", "a ", False),  # inside a run of spaces is no word
        ],
    )
    def test_table(self, content: str, quote: str, cut: bool) -> None:
        """A quote cuts a word when a UAX #29 boundary is missing at its start or end."""
        start = content.index(quote)
        assert cuts_word(content, start, start + len(quote)) is cut

    def test_a_chinese_phrase_inside_a_sentence_is_whole_words(self) -> None:
        """Located in running Chinese text, a short quote is not "inside a longer word"."""
        match = locate("黑人", "我觉得黑人都应该被关起来。")
        assert match is not None
        assert not match.cuts_word

    @settings(max_examples=200, deadline=None)
    @given(st.text(), st.integers(0, 50))
    def test_ends_of_text_are_boundaries(self, text: str, at: int) -> None:
        """The ends of the text always are boundaries, and no offset outside it is a cut."""
        assert is_boundary(text, 0)
        assert is_boundary(text, len(text))
        assert not cuts_word(text, 0, len(text))
        assert not cuts_word(text, at + len(text), at + len(text))


class TestSpaceless:
    @pytest.mark.parametrize(
        ("char", "spaceless"),
        [("女", True), ("ア", True), ("ひ", True), ("ส", True), ("a", False), ("ب", False)],
    )
    def test_scripts_written_without_spaces(self, char: str, spaceless: bool) -> None:
        """Han, kana and Thai are written without spaces between words; Latin, Arabic are not."""
        assert writes_without_spaces(char) is spaceless
