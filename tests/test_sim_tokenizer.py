"""The simulator's BPE-shaped tokenizer."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from pipeline.sim.tokenizer import MAX_WHOLE, count_tokens, token_bytes, tokenize


class TestTokenize:
    @given(st.text())
    def test_tokens_concatenate_to_the_text(self, text: str) -> None:
        """Whatever the text, joining its tokens gives it back exactly."""
        assert "".join(tokenize(text)) == text

    def test_json_is_cut_like_a_real_bpe(self) -> None:
        """Findings JSON splits into the pieces real tokenizers produce."""
        text = json.dumps({"findings": [{"rule_id": "HATE.1", "quotes": ["x"], "verdict": True}]})
        tokens = tokenize(text)
        for piece in ('{"', "findings", '":', ' [{"', "rule", "_id", " true"):
            assert piece in tokens

    def test_false_is_one_token_after_a_colon(self) -> None:
        """The verdict literal is one token with its leading space, as the signal reader expects."""
        assert tokenize(', "verdict": false}') == [",", ' "', "verdict", '":', " false", "}"]

    def test_long_words_are_split_into_chunks(self) -> None:
        """Long words come out in several pieces, no piece longer than MAX_WHOLE."""
        tokens = tokenize(" internationalisation")
        assert len(tokens) > 1
        assert all(len(t) <= MAX_WHOLE for t in tokens)

    def test_digits_go_in_runs_of_three(self) -> None:
        """Numbers split every three digits, as cl100k does."""
        assert tokenize("1234567") == ["123", "456", "7"]

    def test_count_matches_tokenize(self) -> None:
        """count_tokens is the length of tokenize."""
        text = "Moderate the content between the markers."
        assert count_tokens(text) == len(tokenize(text))


class TestTokenBytes:
    def test_bytes_are_utf8(self) -> None:
        """The wire `bytes` field is the UTF-8 encoding of the token."""
        assert token_bytes(" café") == list(" café".encode())
