"""Slips ground, whole-word changes do not: measured on real text in every shared language.

Quotes come from text no one here wrote: the spans annotators marked in SemEval-2021 toxic
spans (English) and the test cases of Multilingual HateCheck (Arabic, Mandarin, Hindi in
Latin letters, German, French, Spanish). Two directions:

- honest slips (a letter dropped, doubled, changed or two swapped, anywhere in a quote of
  24+ characters, short words included, some also re-cased or re-spaced) must ground at
  least 98.5 % of the time;
- whole-word changes (a sibling case of the same HateCheck template, which differs only in
  the identity term or slur; a word dropped or inserted) may ground at most 0.5 % of the
  time, and strongly at most 0.1 %.

In Han text a character is often a word (女人 / 黑人), so a dropped or changed Han character
is a whole-word change there, by design (`pipeline.slips`): it is measured in that direction.

The rates are printed at the end of the module (`pytest tests/test_slips.py -s`).
"""

from __future__ import annotations

import csv
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

from pipeline.grounding import Grounder, normalize, quote_pieces
from pipeline.slips import SLIP_CHARS, slip_budget, word_cost
from pipeline.wordbreak import writes_without_spaces

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
LANGUAGES = ("arabic", "mandarin", "hindi", "german", "french", "spanish")
PER_KIND = 1000  # quotes per language and alteration kind: one miss is 0.1 %
SIBLINGS = 4000  # sibling pairs per language
SLIPS_GROUND = 0.985
WORD_CHANGES_GROUND = 0.005
WORD_CHANGES_GROUND_STRONGLY = 0.001


@dataclass(frozen=True)
class Case:
    """A quote and the content it claims to come from."""

    quote: str
    content: str


@dataclass
class Rate:
    language: str
    direction: str
    kind: str
    n: int = 0
    grounded: int = 0
    strong: int = 0

    def add(self, case: Case) -> None:
        match = Grounder(case.content).locate(case.quote)
        self.n += 1
        self.grounded += match is not None
        self.strong += match is not None and match.strength == "strong"

    def line(self) -> str:
        share = self.grounded / self.n if self.n else 0.0
        strong = self.strong / self.n if self.n else 0.0
        return (
            f"| {self.language} | {self.direction} | {self.kind} | {self.n} "
            f"| {share:.2%} | {strong:.2%} |"
        )


REPORT: list[Rate] = []


@pytest.fixture(scope="module", autouse=True)
def print_rates() -> Iterator[None]:
    """Print every measured rate as one table when the module is done."""
    yield
    if REPORT:
        print("\n\n| language | direction | alteration | n | grounded | strongly |")
        print("|---|---|---|---:|---:|---:|")
        for rate in REPORT:
            print(rate.line())


def measure(language: str, direction: str, kind: str, cases: list[Case]) -> Rate:
    rate = Rate(language, direction, kind)
    for case in cases:
        rate.add(case)
    REPORT.append(rate)
    return rate


# ----------------------------------------------------------------------------- data


@cache
def hatecheck(language: str) -> tuple[dict[str, str], ...]:
    path = SHARED_DATA / "multilingual_hatecheck" / f"{language}.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found: set QUOTEGUARD_SHARED_DATA to the shared data folder")
    with path.open(newline="", encoding="utf-8") as handle:
        return tuple(csv.DictReader(handle))


def hatecheck_cases(language: str) -> list[Case]:
    """Each test case as a quote of itself, in a content that adds an unrelated case after it."""
    rows = hatecheck(language)
    half = len(rows) // 2
    return [
        Case(row["test_case"], f"{row['test_case']}\n{rows[(k + half) % len(rows)]['test_case']}")
        for k, row in enumerate(rows)
    ]


@cache
def toxic_cases() -> list[Case]:
    """Every span annotators marked toxic (contiguous offsets), as a quote of its comment."""
    cases = []
    for name in ("tsd_trial.csv", "tsd_train.csv"):
        path = SHARED_DATA / "toxic_spans" / name
        if not path.is_file():
            pytest.skip(f"{path} not found: set QUOTEGUARD_SHARED_DATA to the shared data folder")
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                offsets = sorted(set(json.loads(row["spans"])))
                runs: list[list[int]] = []
                for offset in offsets:
                    if runs and offset == runs[-1][1]:
                        runs[-1][1] = offset + 1
                    else:
                        runs.append([offset, offset + 1])
                cases += [Case(row["text"][a:b], row["text"]) for a, b in runs]
    return cases


def long_enough(quote: str) -> bool:
    """One piece of at least SLIP_CHARS characters once trimmed: where a slip is forgiven."""
    pieces = quote_pieces(quote)
    return len(pieces) == 1 and len(pieces[0]) >= SLIP_CHARS


# ----------------------------------------------------------------------------- slips


def is_letter(char: str) -> bool:
    return unicodedata.category(char)[0] in "LM"


def letter_sites(quote: str, *, han: bool | None) -> list[int]:
    """Offsets of letters inside words of 2+ letters (`han`: only Han ones, or none of them)."""
    sites = []
    for word in re.finditer(r"\w+", quote):
        if len(word.group()) < 2:
            continue  # a one-letter word dropped or changed is a word change ("a", "I")
        sites += [
            k
            for k in range(word.start(), word.end())
            if is_letter(quote[k]) and (han is None or writes_without_spaces(quote[k]) == han)
        ]
    return sites


def drop(quote: str, k: int, rng: random.Random) -> str | None:
    """The letter at `k` dropped, unless it is the quote's first or last letter: that leaves
    a shorter verbatim quote, no slip."""
    letters = [j for j, c in enumerate(quote) if is_letter(c)]
    if k in {letters[0], letters[-1]}:
        return None
    return quote[:k] + quote[k + 1 :]


def double(quote: str, k: int, rng: random.Random) -> str | None:
    return quote[:k] + quote[k] + quote[k:]


def change(quote: str, k: int, rng: random.Random) -> str | None:
    """Another letter of the same quote and the same category (a base for a base, a mark for
    a mark), as a model's wrong letter would be."""
    kind = unicodedata.category(quote[k])
    others = sorted({c for c in quote if unicodedata.category(c) == kind and c != quote[k]})
    if not others:
        return None
    return quote[:k] + rng.choice(others) + quote[k + 1 :]


def swap(quote: str, k: int, rng: random.Random) -> str | None:
    if k + 1 >= len(quote) or not is_letter(quote[k + 1]) or quote[k] == quote[k + 1]:
        return None
    return quote[:k] + quote[k + 1] + quote[k] + quote[k + 2 :]


SLIPS: dict[str, Callable[[str, int, random.Random], str | None]] = {
    "dropped": drop,
    "doubled": double,
    "changed": change,
    "swapped": swap,
}
# As today, a slipped quote may also come re-cased, re-spaced or in typographic quotes.
DRESSINGS: tuple[Callable[[str], str], ...] = (
    lambda q: q,
    str.upper,
    lambda q: f"“{q.strip()}”",
    lambda q: q.replace(" ", "  \n", 1),
)


def slipped(
    cases: list[Case], slip: str, *, han: bool | None, seed: int, limit: int = PER_KIND
) -> list[Case]:
    """Up to `limit` long quotes with one slip of kind `slip` at a random letter."""
    rng = random.Random(seed)
    pool = [c for c in cases if long_enough(c.quote)]
    rng.shuffle(pool)
    out = []
    for case in pool:
        sites = letter_sites(case.quote, han=han)
        if not sites:
            continue
        changed = SLIPS[slip](case.quote, rng.choice(sites), rng)
        if changed is None or quote_pieces(changed) == quote_pieces(case.quote):
            continue
        out.append(Case(rng.choice(DRESSINGS)(changed), case.content))
        if len(out) == limit:
            break
    return out


@pytest.mark.parametrize("slip", sorted(SLIPS))
class TestSlipsGround:
    def test_english_toxic_spans(self, slip: str) -> None:
        """Human-marked spans of 24+ chars with one slip anywhere (cut edge words included)."""
        cases = slipped(toxic_cases(), slip, han=None, seed=1)
        rate = measure("english", "slip", slip, cases)
        assert rate.n >= PER_KIND // 2
        assert rate.grounded / rate.n >= SLIPS_GROUND

    @pytest.mark.parametrize("language", [lang for lang in LANGUAGES if lang != "mandarin"])
    def test_hatecheck(self, slip: str, language: str) -> None:
        """Test cases of 24+ chars with one slip in any letter (Mandarin: TestHanCharacters)."""
        cases = slipped(hatecheck_cases(language), slip, han=None, seed=2)
        rate = measure(language, "slip", slip, cases)
        assert rate.n >= PER_KIND
        assert rate.grounded / rate.n >= SLIPS_GROUND


class TestHanCharacters:
    @pytest.mark.parametrize("slip", ["doubled", "swapped"])
    def test_doubled_or_swapped_han_characters_ground(self, slip: str) -> None:
        """A Han character doubled, or two swapped, is a copying slip."""
        cases = slipped(hatecheck_cases("mandarin"), slip, han=True, seed=3)
        rate = measure("mandarin", "slip", f"{slip} Han", cases)
        assert rate.n >= 200
        assert rate.grounded / rate.n >= SLIPS_GROUND

    @pytest.mark.parametrize("slip", ["dropped", "changed"])
    def test_dropped_or_changed_han_characters_do_not_ground(self, slip: str) -> None:
        """A Han character dropped (不, "not") or changed (女 for 黑) changes a word."""
        cases = slipped(hatecheck_cases("mandarin"), slip, han=True, seed=4)
        rate = measure("mandarin", "word change", f"{slip} Han", cases)
        assert rate.n >= 200
        assert rate.grounded / rate.n <= WORD_CHANGES_GROUND
        assert rate.strong / rate.n <= WORD_CHANGES_GROUND_STRONGLY


# ----------------------------------------------------------------------------- word changes


def siblings(language: str, seed: int) -> list[Case]:
    """Each case as the content; as the quote, another case of its template (the same
    sentence with another identity term or slur), unless the content holds it after all."""
    rows = hatecheck(language)
    contents = {c.quote: c.content for c in hatecheck_cases(language)}
    by_template: dict[str, list[str]] = {}
    for row in rows:
        by_template.setdefault(row["templ_id"], []).append(row["test_case"])
    pairs = [
        (case, other)
        for cases in by_template.values()
        for case in dict.fromkeys(cases)
        for other in dict.fromkeys(cases)
        if quote_pieces(other) != quote_pieces(case)
    ]
    random.Random(seed).shuffle(pairs)
    out = []
    for case, other in pairs:
        content = contents[case]
        if not in_order(quote_pieces(other), normalize(content).text):
            out.append(Case(other, content))
        if len(out) == SIBLINGS:
            break
    return out


def in_order(pieces: tuple[str, ...], text: str) -> bool:
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def word_edited(cases: list[Case], edit: str, seed: int) -> list[Case]:
    """Long quotes with one inner word dropped, or a word of another case inserted."""
    rng = random.Random(seed)
    vocabulary = sorted({w for c in cases[:500] for w in c.quote.split() if w.isalpha()})
    out = []
    for case in cases:
        words = case.quote.split(" ")
        if not long_enough(case.quote) or len(words) < 4:
            continue
        k = rng.randrange(1, len(words) - 1)
        if edit == "dropped":
            changed = words[:k] + words[k + 1 :]
        else:
            changed = [*words[:k], rng.choice(vocabulary), *words[k:]]
        quote = " ".join(changed)
        if in_order(quote_pieces(quote), normalize(case.content).text):
            continue
        out.append(Case(quote, case.content))
        if len(out) == PER_KIND:
            break
    return out


class TestWordChangesDoNotGround:
    @pytest.mark.parametrize("language", LANGUAGES)
    def test_sibling_cases_of_a_template(self, language: str) -> None:
        """Another identity term or slur in the same sentence: at most 0.5 % ground, and
        only weakly (one-letter-different slurs such as kala / kalua are why it is not 0)."""
        rate = measure(language, "word change", "sibling case", siblings(language, seed=5))
        assert rate.n >= 1000
        assert rate.grounded / rate.n <= WORD_CHANGES_GROUND
        assert rate.strong / rate.n <= WORD_CHANGES_GROUND_STRONGLY

    @pytest.mark.parametrize("edit", ["dropped", "inserted"])
    @pytest.mark.parametrize(
        "language", [*(lang for lang in LANGUAGES if lang != "mandarin"), "english"]
    )
    def test_a_word_dropped_or_inserted(self, language: str, edit: str) -> None:
        """One inner word dropped or inserted (a negation, say) in a quote of 24+ chars
        (Mandarin writes no spaces between words: TestHanCharacters drops its characters)."""
        cases = toxic_cases() if language == "english" else hatecheck_cases(language)
        rate = measure(language, "word change", f"word {edit}", word_edited(cases, edit, 6))
        assert rate.n >= 300
        assert rate.grounded / rate.n <= WORD_CHANGES_GROUND
        assert rate.strong / rate.n <= WORD_CHANGES_GROUND_STRONGLY


class TestWordCost:
    @pytest.mark.parametrize(
        ("said", "found", "cost"),
        [
            ("idiot", "idiot", 0),
            ("idot", "idiot", 1),
            ("idioot", "idiot", 1),
            ("idoit", "idiot", 1),
            ("tat", "that", 1),
            ("hir", "hier", 1),
            ("nut", "not", 1),
            ("dont", "don't", 1),
            ("kala", "kalua", 1),
            ("idt", "idiot", None),
            ("women", "jews", None),
            ("人人", "人", 1),
            ("人女", "女人", 1),
            ("女人", "黑人", None),
            ("人", "女人", None),
        ],
    )
    def test_table(self, said: str, found: str, cost: int | None) -> None:
        """One slip per word, in any word; a changed or dropped Han character is no slip."""
        assert word_cost(said, found) == cost

    def test_budget(self) -> None:
        """One slip per 24 characters of a piece, counting the one a dropped letter took."""
        assert [slip_budget("x" * n) for n in (22, 23, SLIP_CHARS, 46, 47)] == [0, 1, 1, 1, 2]
