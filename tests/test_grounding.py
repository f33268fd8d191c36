"""Tests for pipeline.grounding: normalisation, quote pieces, and locating quotes.

Hand-written tables pin the rules; hypothesis checks the invariants; the SemEval-2021
toxic-spans data (human-marked spans in real comments) checks them on real text.
"""

from __future__ import annotations

import csv
import doctest
import json
import os
import random
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline import grounding
from pipeline.grounding import (
    MIN_QUOTE_CHARS,
    Grounder,
    ground_quotes,
    locate,
    locate_all,
    normalize,
    quote_pieces,
)
from pipeline.models import Match

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
TOXIC_SPANS = SHARED_DATA / "toxic_spans"
TRAIN_SAMPLE = 1500  # rows of tsd_train.csv, a fixed sample: the whole file takes too long
PROPERTY = settings(max_examples=200, deadline=None)  # deadline off: the CI box is shared
# Random text often has fewer than MIN_QUOTE_CHARS letters in a slice; discarding those is
# the point of the property, not a sign of a bad strategy.
SUBSTRINGS = settings(PROPERTY, suppress_health_check=[HealthCheck.filter_too_much])


# ----------------------------------------------------------------------------- helpers


def in_order(pieces: tuple[str, ...], text: str) -> bool:
    """Whether `pieces` occur in `text` in order, without overlapping."""
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def region_holds_quote(match: Match, quote: str, content: str) -> bool:
    """The invariant of exact and normalized matches: the span normalises to hold the quote."""
    return in_order(quote_pieces(quote), normalize(content[match.start : match.end]).text)


def is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


def is_filler(char: str) -> bool:
    """What quote trimming removes from a quote's ends (and a zero-width char)."""
    return char.isspace() or char in "`\u200b\u00ad" or unicodedata.category(char)[0] == "P"


def substance_start(text: str, start: int, end: int) -> int:
    """Where `text[start:end]` starts once its leading punctuation is trimmed."""
    while start < end and is_filler(text[start]):
        start += 1
    return start


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Row:
    """One comment and the spans annotators marked toxic in it."""

    text: str
    spans: tuple[tuple[int, int], ...]

    def quote(self, span: tuple[int, int]) -> str:
        return self.text[span[0] : span[1]]


def group_offsets(offsets: list[int]) -> tuple[tuple[int, int], ...]:
    """Consecutive inclusive offsets as `[start, end)` spans."""
    spans: list[list[int]] = []
    for offset in sorted(set(offsets)):
        if spans and offset == spans[-1][1]:
            spans[-1][1] = offset + 1
        else:
            spans.append([offset, offset + 1])
    return tuple((start, end) for start, end in spans)


def quotable(text: str, spans: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Spans a model may quote: one marked letter ("M") grounds nothing, by design."""
    return tuple((a, b) for a, b in spans if sum(c.isalnum() for c in text[a:b]) >= MIN_QUOTE_CHARS)


@cache
def load(name: str, sample: int | None = None) -> tuple[Row, ...]:
    path = TOXIC_SPANS / name
    if not path.is_file():
        pytest.skip(f"{path} not found: set QUOTEGUARD_SHARED_DATA to the shared data folder")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [
            Row(r["text"], quotable(r["text"], group_offsets(json.loads(r["spans"]))))
            for r in csv.DictReader(handle)
        ]
    if sample is not None:
        rows = random.Random(2021).sample(rows, sample)
    return tuple(rows)


@pytest.fixture(scope="module")
def rows() -> tuple[Row, ...]:
    """The trial file and a fixed sample of the train file."""
    return load("tsd_trial.csv") + load("tsd_train.csv", TRAIN_SAMPLE)


def word_aligned(row: Row, span: tuple[int, int]) -> bool:
    start, end = span
    text = row.text
    return (start == 0 or not text[start - 1].isalnum()) and (
        end == len(text) or not text[end].isalnum()
    )


def long_quotes(
    rows: tuple[Row, ...], *, aligned: bool = True
) -> Iterator[tuple[Row, tuple[int, int]]]:
    """Single-piece spans long enough for fuzzy matching after one edit."""
    for row in rows:
        for span in row.spans:
            pieces = quote_pieces(row.quote(span))
            if (
                (word_aligned(row, span) or not aligned)
                and len(pieces) == 1
                and len(pieces[0]) >= 30
            ):
                yield row, span


def slip_site(quote: str, rng: random.Random) -> tuple[int, int] | None:
    """Start and length of an inner word of 5+ letters: not the first or last word, which
    a span may cut mid-word (a slip there is not near-verbatim)."""
    inner = list(re.finditer(r"\w+", quote))[1:-1]
    words = [m for m in inner if re.fullmatch(r"[^\W\d_]{5,}", m.group())]
    if not words:
        return None
    word = rng.choice(words)
    return word.start(), len(word.group())


def drop_letter(quote: str, rng: random.Random) -> str | None:
    site = slip_site(quote, rng)
    if site is None:
        return None
    at = site[0] + rng.randrange(1, site[1] - 1)
    return quote[:at] + quote[at + 1 :]


def double_letter(quote: str, rng: random.Random) -> str | None:
    site = slip_site(quote, rng)
    if site is None:
        return None
    at = site[0] + rng.randrange(1, site[1] - 1)
    return quote[:at] + quote[at] + quote[at:]


def swap_letters(quote: str, rng: random.Random) -> str | None:
    site = slip_site(quote, rng)
    if site is None:
        return None
    at = site[0] + rng.randrange(1, site[1] - 2)
    return quote[:at] + quote[at + 1] + quote[at] + quote[at + 2 :]


def words_of(text: str) -> list[str]:
    return re.findall(r"\w+(?:['-]\w+)*", normalize(text).text)


# ----------------------------------------------------------------------------- normalise


class TestNormalize:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("Hello World", "hello world"),
            ("a \t\n  b", "a b"),
            ("‘single’ “double” „low‟ ″ ′", '\'single\' "double" "low" " \''),
            ("a–b—c‒d―e−f", "a-b-c-d-e-f"),
            ("zero\u200bwidth\u200c\u200d\u2060\ufeff soft\u00adhyphen", "zerowidth softhyphen"),
            ("ﬁne ① Ⅻ ㍱", "fine 1 xii hpa"),
            ("STRASSE Straße", "strasse strasse"),
            ("e\u0301 é", "é é"),
            ("a \u200b b", "a b"),
            ("…", "..."),
            ("ＦＵＬＬ　ｗｉｄｔｈ", "full width"),
            ("\u1100\u1161\u11a8 각", "각 각"),  # Hangul jamo compose with their syllable
            ("e\u200b\u0301", "é"),  # a zero-width char does not split a char from its mark
        ],
    )
    def test_table(self, raw: str, expected: str) -> None:
        """Each rule of normalisation, one case at a time."""
        assert normalize(raw).text == expected

    def test_offsets_point_into_original_when_lengths_change(self) -> None:
        """Chars NFKC expands map to their source; a dropped char goes with the one before."""
        raw = "ﬁ\u200bx ①"
        norm = normalize(raw)
        assert norm.text == "fix 1"
        assert [norm.span(k, k + 1) for k in range(len(norm.text))] == [
            (0, 2),
            (0, 2),
            (2, 3),
            (3, 4),
            (4, 5),
        ]

    def test_long_cluster(self) -> None:
        """A char with thousands of combining marks (zalgo text) is one unit, mapped whole."""
        raw = "x" + "a" + "\u0301\u0316" * 5000 + "y"
        norm = normalize(raw)
        assert norm.text.startswith("xá")
        assert norm.span(1, 2) == (1, len(raw) - 1)

    def test_whitespace_run_maps_to_the_whole_run(self) -> None:
        """A collapsed whitespace run maps back to all of it."""
        norm = normalize("a \n\t b")
        assert norm.span(0, 3) == (0, 6)

    @PROPERTY
    @given(st.text(min_size=1), st.data())
    def test_any_slice_maps_back_to_text_that_holds_it(self, raw: str, data: st.DataObject) -> None:
        """The original span of any normalised slice normalises to text containing the slice."""
        norm = normalize(raw)
        assume(norm.text)
        a = data.draw(st.integers(0, len(norm.text) - 1))
        b = data.draw(st.integers(a + 1, len(norm.text)))
        start, end = norm.span(a, b)
        assert 0 <= start < end <= len(raw)
        assert norm.text[a:b] in normalize(raw[start:end]).text

    @PROPERTY
    @given(st.text())
    def test_offsets_are_monotone(self, raw: str) -> None:
        """Offsets never go backwards, so a span's start never passes its end."""
        norm = normalize(raw)
        origins = [norm.origin(k) for k in range(len(norm.text))]
        assert [s for s, _ in origins] == sorted(s for s, _ in origins)
        assert all(0 <= s < e <= len(raw) for s, e in origins)

    @PROPERTY
    @given(st.lists(st.sampled_from([*" \n\tab", "\u200b", "\u00ad", "\u0301", "\u00a0"])))
    def test_whitespace_is_collapsed(self, raw: list[str]) -> None:
        """No two spaces meet, whatever vanishes or folds between them."""
        assert "  " not in normalize("".join(raw)).text

    @PROPERTY
    @given(st.text())
    def test_idempotent(self, raw: str) -> None:
        """Normalising normalised text changes nothing."""
        once = normalize(raw).text
        assert normalize(once).text == once


class TestQuotePieces:
    @pytest.mark.parametrize(
        ("quote", "expected"),
        [
            ("you idiot", ("you idiot",)),
            ('"You IDIOT!"', ("you idiot",)),
            ("`moron`", ("moron",)),
            ("a ... b", ("a", "b")),
            ("a … b", ("a", "b")),
            ("a [...] b", ("a", "b")),
            ("a […] b", ("a", "b")),
            ("a.... b", ("a", "b")),
            ("...idiot", ("idiot",)),
            ("idiot, ... , moron.", ("idiot", "moron")),
            ("", ()),
            ("...", ()),
            ("!?! -- ...", ()),
            ("\u200b \u00ad", ()),
        ],
    )
    def test_table(self, quote: str, expected: tuple[str, ...]) -> None:
        """Ellipses split, punctuation is trimmed from each piece, empty pieces go."""
        assert quote_pieces(quote) == expected


# ----------------------------------------------------------------------------- locate

CONTENT = "Because he's a moron and a bigot. It's not any more complicated than that."
LONG = "It's not any more complicated than that"  # 39 chars: one slip allowed


class TestLocate:
    @pytest.mark.parametrize(
        ("quote", "span", "method"),
        [
            ("moron", (15, 20), "exact"),
            ("a m", (13, 16), "exact"),  # the first occurrence, even inside a word
            ("MORON", (15, 20), "normalized"),
            ("he’s a moron", (8, 20), "normalized"),
            ("“moron”", (15, 20), "normalized"),
            ("a   moron\n and", (13, 24), "normalized"),
            ("moron ... bigot", (15, 32), "normalized"),
            ("moron … bigot.", (15, 32), "normalized"),
            ("moron [...] bigot", (15, 32), "normalized"),
            ("Because ... a ... a", (0, 22), "normalized"),  # each piece after the previous
            ("It's not any more complicatd than that", (34, 73), "fuzzy"),  # dropped
            ("It's not any more complicated thann that", (34, 73), "fuzzy"),  # doubled
            ("It's not any more compilcated than that", (34, 73), "fuzzy"),  # swapped
            ("Its not any more complicated than that", (34, 73), "fuzzy"),  # apostrophe
            ("moron ... It's not any more complicatd than that", (15, 73), "fuzzy"),
            ("s not any more complicatd than that", (37, 73), "fuzzy"),  # cut mid-word
            ("It's not any more complicatd than th", (34, 71), "fuzzy"),  # cut mid-word
        ],
    )
    def test_grounded(self, quote: str, span: tuple[int, int], method: str) -> None:
        """Verbatim, normalised and near-verbatim quotes are found at the right span; only
        the near-verbatim ones are weak."""
        match = locate(quote, CONTENT)
        assert match is not None
        assert (match.start, match.end, match.method) == (*span, method)
        assert match.strength == ("weak" if method == "fuzzy" else "strong")
        assert bool(match.edits) == (method == "fuzzy")

    @pytest.mark.parametrize(
        ("quote", "kind", "found", "quoted"),
        [
            ("It's not any more complicatd than that", "dropped", "e", ""),
            ("It's not any more complicated thann that", "added", "", "n"),
            ("It's not any more compilcated than that", "swapped", "li", "il"),
            ("It's nut any more complicated than that", "changed", "o", "u"),
            ("It's not any more complicated thin that", "changed", "a", "i"),
            ("It's not any more complicated tan that", "dropped", "h", ""),
            ("It's not any more complicated than tat", "dropped", "h", ""),
        ],
    )
    def test_slip_edits_say_what_changed_where(
        self, quote: str, kind: str, found: str, quoted: str
    ) -> None:
        """A slip, in a short word too, grounds weakly with one edit at the content's offsets."""
        match = locate(quote, CONTENT)
        assert match is not None
        assert (match.method, match.strength) == ("fuzzy", "weak")
        (edit,) = match.edits
        assert (edit.kind, edit.found, edit.quoted) == (kind, found, quoted)
        assert CONTENT[edit.start : edit.end] == found
        assert 34 <= edit.start <= edit.end <= 73

    @pytest.mark.parametrize(
        "quote",
        [
            pytest.param("", id="empty"),
            pytest.param("...", id="ellipsis only"),
            pytest.param(" .,!", id="punctuation only"),
            pytest.param("\u200b", id="zero-width only"),
            pytest.param("a", id="one letter proves nothing"),
            pytest.param("I ... .", id="under three letters in all"),
            pytest.param("idiot", id="absent word"),
            pytest.param("moon", id="short quote, dropped letter"),
            pytest.param("he's a moran", id="under 25 chars: no fuzzy"),
            pytest.param("bigot ... moron", id="pieces out of order"),
            pytest.param("moron ... moron", id="pieces may not overlap"),
            pytest.param("It's not any less complicated than that", id="word swapped"),
            pytest.param("It's not any more complicated than this", id="last word swapped"),
            pytest.param("It's not any more very complicated than that", id="word inserted"),
            pytest.param("It's not any complicated than that at all", id="word dropped"),
            pytest.param("It's not more any complicated than that", id="words reordered"),
            pytest.param("It's not anymore complicated than that", id="space dropped"),
            pytest.param("It's not any mroe compilcated than that", id="two slips in 39 chars"),
            pytest.param("It's not any more complicatd than thx", id="cut word not verbatim"),
            pytest.param("It's not any more complicatd than at", id="cut word not a prefix"),
        ],
    )
    def test_not_grounded(self, quote: str) -> None:
        """Anything that is not the content's text, up to normalisation and slips, is None."""
        assert locate(quote, CONTENT) is None

    def test_exact_span_slices_back_to_the_quote(self) -> None:
        """An exact match is the quote itself, surrounding punctuation and all."""
        match = locate(" a bigot. ", CONTENT)
        assert match is not None
        assert match.method == "exact"
        assert CONTENT[match.start : match.end] == " a bigot. "

    def test_offsets_are_in_the_original_content(self) -> None:
        """Offsets count original chars even when normalisation changes lengths before them."""
        content = "ﬁ ﬁ\u200b ① You are a ﬁlthy “liar”"
        match = locate('filthy "LIAR"', content)
        assert match is not None
        assert content[match.start : match.end] == "ﬁlthy “liar"

    def test_fuzzy_scores_below_normalized(self) -> None:
        """A fuzzy match scores below 100; exact and normalized score 100."""
        fuzzy = locate("It's not any more complicatd than that", CONTENT)
        normalized = locate("MORON", CONTENT)
        assert fuzzy is not None
        assert normalized is not None
        assert 90 < fuzzy.score < 100 == normalized.score

    def test_fuzzy_picks_the_closest_occurrence(self) -> None:
        """Of two near occurrences, the one with fewer edits wins, not the first."""
        content = "you are a complete and utter imbecille. you are a complete and utter imbecile."
        match = locate("you are a complete and utter imbecile!", content)
        assert match is not None
        assert content[match.start : match.end] == "you are a complete and utter imbecile"

    def test_budget_grows_with_length(self) -> None:
        """Two slips are forgiven in a quote of 50 chars or more, not in one of 39."""
        content = "Honestly, the most ridiculous and unbelievable commentary I have read."
        quote = "the most ridiculuos and unbelievabel commentary I have read"
        assert len(quote) >= 50
        match = locate(quote, content)
        assert match is not None
        assert match.method == "fuzzy"

    def test_doctest(self) -> None:
        """The examples in the module's docstrings run and hold."""
        assert doctest.testmod(grounding).failed == 0


def cluster_bounds(text: str) -> list[int]:
    """Offsets where a quote may start or end without splitting a char from its marks."""
    return [k for k in range(len(text) + 1) if k == len(text) or not is_mark(text[k])]


# Chars whose normalisation is not themselves, plus plain ones.
ALPHABET = st.sampled_from(
    [*"abcXYZ  .,-'\"\n", "’", "“", "—", "\u200b", "\u00ad", "ﬁ", "①", "ß", "é", "e\u0301", "Σς"]
)
VARIANTS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "typographic": lambda q: q.replace("'", "’").replace('"', "”").replace("-", "—"),
    "plain": lambda q: q.replace("’", "'").replace("“", '"').replace("—", "-"),
    "spaced": lambda q: q.replace(" ", " \n\t "),
    "zero-width": "\u200b".join,
}


class TestLocateProperties:
    @SUBSTRINGS
    @given(st.text(min_size=1), st.data())
    def test_any_substring_is_found_exactly(self, content: str, data: st.DataObject) -> None:
        """Any substring with a letter or digit is found verbatim, at its first occurrence
        (or a later one that is whole words, when the first cuts a word)."""
        i = data.draw(st.integers(0, len(content) - 1))
        j = data.draw(st.integers(i + 1, len(content)))
        quote = content[i:j]
        assume(sum(c.isalnum() for c in quote) >= MIN_QUOTE_CHARS)
        match = locate(quote, content)
        assert match is not None
        assert match.method == "exact"
        assert content[match.start : match.end] == quote
        assert match.start <= i or not match.cuts_word

    @SUBSTRINGS
    @given(st.lists(ALPHABET, min_size=1).map("".join), st.data())
    def test_normalised_variants_are_found(self, content: str, data: st.DataObject) -> None:
        """A substring changed only in ways normalisation undoes is found, and the span holds it."""
        bounds = cluster_bounds(content)
        i = data.draw(st.sampled_from(bounds[:-1]))
        j = data.draw(st.sampled_from([k for k in bounds if k > i]))
        assume(sum(c.isalnum() for c in content[i:j]) >= MIN_QUOTE_CHARS)
        quote = VARIANTS[data.draw(st.sampled_from(sorted(VARIANTS)))](content[i:j])
        match = locate(quote, content)
        assert match is not None
        assert match.method in {"exact", "normalized"}
        assert region_holds_quote(match, quote, content)
        assert match.start <= substance_start(content, i, j) or not match.cuts_word

    @PROPERTY
    @given(st.text(), st.text())
    def test_every_strong_match_holds_the_quote(self, quote: str, content: str) -> None:
        """Whatever the inputs, a strong match's span normalises to hold the quote."""
        match = locate(quote, content)
        if match is not None:
            assert 0 <= match.start <= match.end <= len(content)
            assert (match.strength == "strong") == (match.method != "fuzzy")
            if match.strength == "strong":
                assert region_holds_quote(match, quote, content)


def apply_edits(match: Match, content: str) -> str:
    """The matched span with the quote's slips put back: what the quote says it copied."""
    text, start = content[match.start : match.end], match.start
    for edit in reversed(match.edits):
        text = text[: edit.start - start] + edit.quoted + text[edit.end - start :]
    return text


# Words in Latin and Arabic letters (Han has its own rules: tests/test_slips.py).
WORDS = st.lists(
    st.text(st.sampled_from([*"abcdeilnorst", *"بتسكلمن", "é"]), min_size=1, max_size=9),
    min_size=8,
    max_size=30,
)
SLIPS: dict[str, Callable[[str, int], str]] = {
    "drop": lambda w, k: w[:k] + w[k + 1 :],
    "double": lambda w, k: w[:k] + w[k] + w[k:],
    "swap": lambda w, k: w[:k] + w[k + 1 : k + 2] + w[k] + w[k + 2 :],
    "change": lambda w, k: w[:k] + ("x" if w[k] != "x" else "y") + w[k + 1 :],
}


class TestSlipProperties:
    @PROPERTY
    @given(WORDS, st.sampled_from(sorted(SLIPS)), st.data())
    def test_a_slip_grounds_and_its_edits_give_back_the_quote(
        self, words: list[str], slip: str, data: st.DataObject
    ) -> None:
        """One slip in a quote of 24+ chars grounds; a weak match's span with its edits put
        back normalises to the quote itself, and every edit's `found` is the content's text."""
        content = " ".join(words)
        first = data.draw(st.integers(0, len(words) - 4))
        count = data.draw(st.integers(4, len(words) - first))
        quoted = words[first : first + count]
        at = data.draw(st.integers(0, len(quoted) - 1))
        word = quoted[at]
        assume(len(word) >= 2)
        k = data.draw(st.integers(0, len(word) - 2))
        quoted[at] = SLIPS[slip](word, k)
        quote = " ".join(quoted)
        assume(len(quote_pieces(quote)[0]) >= 24)
        match = locate(quote, content)
        assert match is not None
        assert all(content[e.start : e.end] == e.found for e in match.edits)
        if match.strength == "weak":
            assert len(match.edits) == 1
            assert quote_pieces(apply_edits(match, content)) == quote_pieces(quote)
        else:
            assert region_holds_quote(match, quote, content)


# ----------------------------------------------------------------------------- real data


class TestToxicSpans:
    def test_every_marked_span_grounds_exactly(self, rows: tuple[Row, ...]) -> None:
        """Each human-marked span, as a quote, is found verbatim at its offsets or earlier."""
        failures = []
        for row in rows:
            for span in row.spans:
                quote = row.quote(span)
                match = locate(quote, row.text)
                if (
                    match is None
                    or match.method != "exact"
                    or row.text[match.start : match.end] != quote
                    or match.start > span[0]
                ):
                    failures.append((quote, span, match))
        assert not failures, failures[:5]

    @pytest.mark.parametrize("variant", ["upper", "typographic", "spaced", "zero-width"])
    def test_normalised_copies_ground(self, rows: tuple[Row, ...], variant: str) -> None:
        """Case, typographic quotes, extra whitespace, zero-width chars: still grounded."""
        change = VARIANTS[variant]
        failures = []
        for row in rows:
            for span in row.spans:
                quote = change(row.quote(span))
                match = locate(quote, row.text)
                if match is None or not region_holds_quote(match, quote, row.text):
                    failures.append((quote, span, match))
        assert not failures, failures[:5]

    def test_quoted_in_typographic_marks_grounds(self, rows: tuple[Row, ...]) -> None:
        """A span wrapped in curly quotes, as a model often writes it, is grounded."""
        failures = []
        for row in rows:
            for span in row.spans:
                quote = f"“{row.quote(span)}”"
                match = locate(quote, row.text)
                if (
                    match is None
                    or not region_holds_quote(match, quote, row.text)
                    or match.start > substance_start(row.text, *span)
                ):
                    failures.append((row.quote(span), span, match))
        assert not failures, failures[:5]

    @pytest.mark.parametrize("slip", [drop_letter, double_letter, swap_letters])
    def test_one_slip_in_a_long_quote_grounds(
        self, rows: tuple[Row, ...], slip: Callable[[str, random.Random], str | None]
    ) -> None:
        """A letter dropped, doubled or swapped in a quote of 30+ chars is a fuzzy match,
        also when the marked span starts or ends mid-word."""
        rng = random.Random(5)
        failures = []
        count = 0
        for row, span in long_quotes(rows, aligned=False):
            quote = row.quote(span)
            slipped = slip(quote, rng)
            if slipped is None:
                continue
            count += 1
            match = locate(slipped, row.text)
            if match is None or quote_pieces(row.text[match.start : match.end]) != quote_pieces(
                quote
            ):
                failures.append((slipped, span, match))
        assert count > 100
        assert not failures, failures[:5]

    def test_ellipsis_joining_two_spans_grounds(self, rows: tuple[Row, ...]) -> None:
        """Two marked spans joined by an ellipsis, in order, ground from the first to the last."""
        failures = []
        count = 0
        for row in rows:
            for first, second in zip(row.spans, row.spans[1:], strict=False):
                quote = f"{row.quote(first)} … {row.quote(second)}"
                match = locate(quote, row.text)
                count += 1
                if (
                    match is None
                    or not region_holds_quote(match, quote, row.text)
                    or match.start > substance_start(row.text, *first)
                    or match.end > second[1]
                ):
                    failures.append((quote, first, second, match))
        assert count > 100
        assert not failures, failures[:5]

    def test_pieces_out_of_order_do_not_ground(self, rows: tuple[Row, ...]) -> None:
        """Two spans joined by an ellipsis in the wrong order are not grounded."""
        failures = []
        count = 0
        for row in rows:
            norm = normalize(row.text).text
            for first, second in zip(row.spans, row.spans[1:], strict=False):
                quote = f"{row.quote(second)} ... {row.quote(first)}"
                if in_order(quote_pieces(quote), norm):
                    continue  # the text repeats itself: this order is really there
                count += 1
                if locate(quote, row.text) is not None:
                    failures.append((quote, first, second))
        assert count > 100
        assert not failures, failures[:5]

    @pytest.mark.parametrize("edit", ["swap word", "insert word", "reorder words"])
    def test_word_edits_do_not_ground(self, rows: tuple[Row, ...], edit: str) -> None:
        """A word swapped for another word of the text, a word inserted, two words reordered."""
        rng = random.Random(7)
        failures = []
        count = 0
        for row, span in long_quotes(rows):
            quote = row.quote(span)
            words = quote.split(" ")
            changed = word_edit(edit, words, words_of(row.text), rng)
            if changed is None or in_order(quote_pieces(changed), normalize(row.text).text):
                continue
            count += 1
            if locate(changed, row.text) is not None:
                failures.append((changed, quote))
        assert count > 50
        assert not failures, failures[:5]

    def test_words_not_in_the_text_do_not_ground(self, rows: tuple[Row, ...]) -> None:
        """A quote made of words from other comments, none in this one, is not grounded."""
        rng = random.Random(11)
        pool = sorted({w for row in rows[:200] for w in words_of(row.text) if len(w) > 3})
        failures = []
        for row in rows[:300]:
            present = set(words_of(row.text))
            foreign = [w for w in rng.sample(pool, 40) if w not in present][:8]
            quote = " ".join(foreign)
            if locate(quote, row.text) is not None:
                failures.append(quote)
        assert not failures, failures[:5]


def word_edit(edit: str, words: list[str], vocabulary: list[str], rng: random.Random) -> str | None:
    """`words` with one word-level edit, or None if this quote cannot take it."""
    # Only whole words with another whole word after them: moving punctuation is no edit.
    pairs = [k for k in range(len(words) - 1) if words[k].isalpha() and words[k + 1].isalpha()]
    if not pairs:
        return None
    k = rng.choice(pairs)
    changed = list(words)
    if edit == "swap word":
        others = [v for v in vocabulary if v.isalpha() and abs(len(v) - len(words[k])) > 2]
        if not others:
            return None
        changed[k] = rng.choice(others)
    elif edit == "insert word":
        changed.insert(k + 1, rng.choice(vocabulary))
    else:
        nxt = k + 1
        if words[k].lower() == words[nxt].lower():
            return None
        changed[k], changed[nxt] = words[nxt], words[k]
    return " ".join(changed)


# ----------------------------------------------------------------------------- many quotes


class TestGrounder:
    def test_verbatim_quote_skips_normalising(self) -> None:
        """A quote found verbatim never pays for normalising the content."""
        grounder = Grounder(CONTENT)
        assert grounder.locate("bigot") is not None
        assert "normalized" not in vars(grounder)

    def test_content_is_normalised_once(self) -> None:
        """Every quote after the first reuses the same normalised content."""
        grounder = Grounder(CONTENT)
        grounder.locate("MORON")
        first = grounder.normalized
        grounder.locate("BIGOT")
        assert grounder.normalized is first

    def test_many_slips_in_one_content_match_as_one_by_one(self, rows: tuple[Row, ...]) -> None:
        """Past a few slipped quotes a Grounder indexes the content's words; the matches are
        the ones a fresh Grounder per quote finds."""
        content = "\n\n".join(row.text for row in rows[:300])
        rng = random.Random(13)
        quotes = [
            slipped
            for row, span in long_quotes(rows[:300])
            if (slipped := drop_letter(row.quote(span), rng)) is not None
        ][:20]
        assert len(quotes) == 20
        shared = Grounder(content)
        together = [shared.locate(quote) for quote in quotes]
        assert together == [Grounder(content).locate(quote) for quote in quotes]
        assert all(match is not None and match.strength == "weak" for match in together)


class TestLocateAll:
    def test_same_as_locate_one_by_one(self) -> None:
        """locate_all gives what locate gives for each quote, in the same order."""
        quotes = ["moron", "BIGOT", "idiot", "bigot ... moron", LONG.replace("more", "moer")]
        assert locate_all(quotes, CONTENT) == [locate(q, CONTENT) for q in quotes]


class TestGroundQuotes:
    def test_a_verdict_for_every_quote(self) -> None:
        """Grounded or not, every quote gets a verdict, in order; none is dropped."""
        verdicts = ground_quotes(["moron", "idiot", "moron"], CONTENT)
        assert [v.quote for v in verdicts] == ["moron", "idiot", "moron"]
        assert [v.grounded for v in verdicts] == [True, False, True]

    def test_verdicts_serialise(self) -> None:
        """A verdict round-trips through JSON, as it must to cross a broker."""
        (verdict,) = ground_quotes(["MORON"], CONTENT)
        assert type(verdict).model_validate_json(verdict.model_dump_json()) == verdict


class TestCutsWord:
    def test_a_quote_inside_a_word_is_marked(self) -> None:
        match = locate("ass", "what a classic")
        assert match is not None
        assert match.cuts_word

    def test_a_whole_word_occurrence_is_preferred(self) -> None:
        """The same letters as a word of their own later on: that occurrence is the match."""
        content = "a classic ass"
        match = locate("ass", content)
        assert match is not None
        assert (content[match.start : match.end], match.start, match.cuts_word) == (
            "ass",
            10,
            False,
        )

    @pytest.mark.parametrize(
        ("quote", "content"),
        [("idiot", "you idiot!"), ("“moron”", 'you "moron".'), ("BS", "BS")],
    )
    def test_whole_words_are_not_marked(self, quote: str, content: str) -> None:
        match = locate(quote, content)
        assert match is not None
        assert not match.cuts_word
