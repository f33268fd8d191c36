"""Grounding: find each quote the model gave in the content it claims to quote.

A quote is grounded when it is in the content, and the match says how strongly:

- `exact`: verbatim, found by `str.find` in the raw content before anything is normalised;
- `normalized`: equal after normalisation (`pipeline.textnorm`: case, typographic quotes,
  whitespace, NFKC, zero-width characters; ellipses split a quote into pieces found in order,
  each trimmed of punctuation at its ends);
- `fuzzy`: near-verbatim, with copying slips (`pipeline.slips`): a letter dropped, doubled,
  changed or swapped, at most one per word and one per 24 characters, words aligned one to
  one. Such a match is `weak` and lists its `edits`; the other two are `strong`.

`cuts_word` says whether the span starts or ends inside a word, by Unicode word segmentation
(`pipeline.wordbreak`), so a Chinese phrase inside a sentence cuts nothing.

Cost: a verbatim quote is one `str.find` (plus a later whole-word occurrence when the first
cuts a word); the content is normalised once per `Grounder`, on the first quote that needs
it. However the content repeats itself, the search for one piece stops after about
`WORK_PASSES` passes over the content's length: a quote that needs more is not grounded.

Everything here is pure: no I/O, no logging. The caller records the verdicts.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import accumulate, pairwise

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, Levenshtein

from pipeline.models import Match, MatchMethod, QuoteVerdict, SlipEdit
from pipeline.slips import slip_budget, slip_edit, word_cost
from pipeline.textnorm import (
    MIN_QUOTE_CHARS,
    Normalized,
    has_substance,
    normalize,
    quote_pieces,
)
from pipeline.wordbreak import cuts_word

__all__ = [
    "MIN_QUOTE_CHARS",
    "WORK_PASSES",
    "Grounder",
    "Normalized",
    "cuts_word",
    "ground_quotes",
    "locate",
    "locate_all",
    "normalize",
    "quote_pieces",
]

#: How many passes over the content's length one piece may cost at most, whatever the
#: content repeats ("a" * 100_000): past that the piece is not grounded.
WORK_PASSES = 20
#: A cut edge word ("...complicat" of "complicated") may carry a slip only if this long:
#: a shorter fragment with a slip ("at" for "that") is a guess, not a copy.
CUT_SLIP_CHARS = 4

# Apostrophes and hyphens inside a word keep it one word, so "don't" vs "dont" is a slip.
_WORD = re.compile(r"\w+(?:['-]\w+)*")
_WORD_SPLIT = re.compile(f"({_WORD.pattern})")
# What judging one candidate alignment costs beyond its chars, in chars of a C pass: the
# Python steps around it take about as long as scanning a few hundred chars.
_CANDIDATE_COST = 256
# Building the index of the content's words costs about as much as this many rapidfuzz
# passes over them (1.3 µs a word against 0.1 µs, on Latin and Han text alike).
_NEAR_PASSES_FOR_INDEX = 12
# Past one machine word of bits, rapidfuzz's OSA costs a multiple of the other word's length.
_LONG_ANCHOR = 64
_METHOD_RANK: dict[MatchMethod, int] = {"exact": 0, "normalized": 1, "fuzzy": 2}


# ----------------------------------------------------------------------------- fuzzy words


class _Words:
    """The words of a normalised text, where each starts, and (when asked) where each is."""

    def __init__(self, text: str) -> None:
        # Split keeps the words (the group) between the separators: [sep, word, sep, ...,
        # sep]. Offsets then come from summed lengths, all in C: no match object per word.
        parts = _WORD_SPLIT.split(text)
        self.texts: list[str] = parts[1::2]
        self.starts: list[int] = list(accumulate(map(len, parts)))[0:-1:2]

    @cached_property
    def index(self) -> dict[str, list[int]]:
        """Each distinct word and its positions, in order."""
        index: dict[str, list[int]] = {}
        for number, word in enumerate(self.texts):
            index.setdefault(word, []).append(number)
        return index

    def end(self, number: int) -> int:
        return self.starts[number] + len(self.texts[number])

    def near(self, word: str, first: int) -> list[int]:
        """Positions, from `first` on, of every word `word` could be a slip of (a superset)."""
        if len(word) > _LONG_ANCHOR:
            # rapidfuzz compares two long words in time of the product of their lengths,
            # cutoff or not; words whose lengths differ by two or more are never a slip.
            size = len(word)
            near = [n for n in range(first, len(self.texts)) if abs(len(self.texts[n]) - size) < 2]
            return [n for n in near if OSA.distance(word, self.texts[n], score_cutoff=1) <= 1]
        # Levenshtein <= 2 holds every OSA <= 1 (a swap is two substitutions), and rapidfuzz
        # computes it about twice as fast; OSA then sorts out the few it lets through.
        similar = process.extract(
            word, self.texts[first:], scorer=Levenshtein.distance, score_cutoff=2, limit=None
        )
        return [
            first + number
            for found, _, number in similar
            if OSA.distance(word, found, score_cutoff=1) <= 1
        ]


def _edge_cost(said: str, found: str, *, at_start: bool) -> tuple[int, int] | None:
    """Slips and cut chars of a quote's first (or last) word against its counterpart.

    A quote may start or end mid-word ("...to say the lea"): an edge word may be the end
    (or start) of its counterpart, verbatim or, if long enough, with one slip.
    """
    if found.endswith(said) if at_start else found.startswith(said):
        return 0, len(found) - len(said)
    cost = word_cost(said, found)
    if cost is not None:
        return cost, 0
    if len(said) < CUT_SLIP_CHARS:
        return None
    for kept in (len(said) - 1, len(said), len(said) + 1):
        if 0 < kept < len(found):
            part = found[-kept:] if at_start else found[:kept]
            cost = word_cost(said, part)
            if cost is not None:
                return cost, len(found) - kept
    return None


# ----------------------------------------------------------------------------- locating


@dataclass(frozen=True, slots=True)
class _Hit:
    """A piece found in the normalised content, `[start, end)` in normalised offsets."""

    start: int
    end: int
    score: float
    method: MatchMethod
    edits: list[SlipEdit] = field(default_factory=list)


class Grounder:
    """One content against which many quotes are located; normalised once, when first needed.

    >>> Grounder("You are a “moron”.").locate('"MORON"').method
    'normalized'
    >>> match = Grounder("It's not any more complicated than that").locate(
    ...     "It's not any more complicatd than that")
    >>> match.strength, [(e.kind, e.found) for e in match.edits]
    ('weak', [('dropped', 'e')])
    """

    def __init__(self, content: str) -> None:
        self.content = content
        self._fuzzy_pieces = 0

    @cached_property
    def normalized(self) -> Normalized:
        return normalize(self.content)

    @cached_property
    def _words(self) -> _Words:
        return _Words(self.normalized.text)

    def locate(self, quote: str) -> Match | None:
        """Where `quote` is in the content, or None if it is not grounded."""
        if not has_substance(quote):
            return None
        start = self._find_exact(quote)
        if start >= 0:
            end = start + len(quote)
            return Match(
                start=start,
                end=end,
                score=100.0,
                method="exact",
                cuts_word=cuts_word(self.content, start, end),
            )
        pieces = quote_pieces(quote)
        return self._locate_pieces(pieces) if pieces else None

    def _find_exact(self, quote: str) -> int:
        """The first verbatim occurrence that is whole words, else the first one ("ass" in
        "a classic ass" is the second): a short quote inside a word is weak evidence."""
        content = self.content
        first = content.find(quote)
        if first < 0 or not cuts_word(content, first, first + len(quote)):
            return first
        # Each further try costs about len(quote): in content that repeats itself the quote
        # may occur at every offset, so the tries stop after WORK_PASSES passes' worth.
        tries = WORK_PASSES * len(content) // len(quote) + 1
        start = first
        while tries > 0:
            start = content.find(quote, start + 1)
            if start < 0:
                break
            if not cuts_word(content, start, start + len(quote)):
                return start
            tries -= 1
        return first

    def _locate_pieces(self, pieces: Sequence[str]) -> Match | None:
        hits: list[_Hit] = []
        position = 0
        for piece in pieces:
            hit = self._find_normalized(piece, position) or self._find_fuzzy(piece, position)
            if hit is None:
                return None
            hits.append(hit)
            position = hit.end  # pieces may not overlap: each starts after the previous
        start, end = self.normalized.span(hits[0].start, hits[-1].end)
        method = max((h.method for h in hits), key=_METHOD_RANK.__getitem__)
        return Match(
            start=start,
            end=end,
            score=min(h.score for h in hits),
            method=method,
            cuts_word=cuts_word(self.content, start, end),
            strength="weak" if method == "fuzzy" else "strong",
            edits=[edit for hit in hits for edit in hit.edits],
        )

    def _find_normalized(self, piece: str, position: int) -> _Hit | None:
        start = self.normalized.text.find(piece, position)
        if start < 0:
            return None
        return _Hit(start, start + len(piece), 100.0, "normalized")

    def _find_fuzzy(self, piece: str, position: int) -> _Hit | None:
        budget = slip_budget(piece)
        quoted = list(_WORD.finditer(piece))
        if budget == 0 or not quoted:
            return None
        words = self._words
        first = bisect_left(words.starts, position)
        firsts = self._candidates(quoted, first, budget)
        best: _Hit | None = None
        # Content that repeats itself offers the same window again and again: each is
        # judged once, and all of them together may cost WORK_PASSES passes at most (over
        # the content and one candidate, so a short content still gets WORK_PASSES).
        work = WORK_PASSES * (len(self.normalized.text) + len(piece) + _CANDIDATE_COST)
        judged: set[str] = set()
        for candidate in sorted(firsts):
            if candidate < first:
                continue
            work -= len(piece) + _CANDIDATE_COST
            if work < 0:
                break
            start = words.starts[candidate]
            window = self.normalized.text[start : start + len(piece) + budget]
            if window in judged:
                continue
            judged.add(window)
            hit = self._fuzzy_at(piece, quoted, candidate, budget)
            if hit is not None and (best is None or len(hit.edits) < len(best.edits)):
                best = hit
                if len(hit.edits) == 1:
                    break  # the fewest possible (0 would have been a normalized match)
        return best

    def _candidates(self, quoted: list[re.Match[str]], first: int, budget: int) -> set[int]:
        """Content word numbers, from `first` on, where the piece's first word may align."""
        words = self._words
        # Edge words may be cut mid-word, so only inner words anchor an alignment.
        inner = range(1, len(quoted) - 1)
        self._fuzzy_pieces += 1
        # The index costs about NEAR_PASSES_FOR_INDEX rapidfuzz passes to build: worth it
        # from the piece that would make that many passes.
        if len(inner) > budget and self._fuzzy_pieces >= _NEAR_PASSES_FOR_INDEX:
            # At most `budget` words carry a slip, so of any budget + 1 inner words one is
            # intact: the positions of the rarest budget + 1 cover every alignment.
            index = words.index
            rarest = sorted(inner, key=lambda k: len(index.get(quoted[k].group(), ())))
            return {
                n - k
                for k in rarest[: budget + 1]
                for n in index.get(quoted[k].group(), ())
                if n - k >= first
            }
        # Every word near the longest inner one: one rapidfuzz pass over the words.
        anchor = max(inner or range(len(quoted)), key=lambda k: len(quoted[k].group()))
        return {n - anchor for n in words.near(quoted[anchor].group(), first + anchor)}

    def _fuzzy_at(
        self, piece: str, quoted: list[re.Match[str]], first: int, budget: int
    ) -> _Hit | None:
        """The piece aligned word for word with the content's words from `first` on."""
        words = self._words
        last = first + len(quoted) - 1
        if last >= len(words.texts):
            return None
        edits = 0
        head = tail = 0  # chars of the first / last content word that a quote cut off
        for offset, word in enumerate(quoted):
            said, found = word.group(), words.texts[first + offset]
            if offset == 0 or offset == len(quoted) - 1:
                edge = _edge_cost(said, found, at_start=offset == 0)
                if edge is None or (edge[0] and self._beside(said, first, last, offset)):
                    return None
                cost, cut = edge
                if offset == 0:
                    head = cut
                else:
                    tail = cut
            else:
                found_cost = word_cost(said, found)
                if found_cost is None:
                    return None
                cost = found_cost
            edits += cost
            if edits > budget:
                return None
        # Whatever the piece has around and between its words (symbols, say) is compared
        # too: the whole region, separators included, must stay within the edit budget.
        text = self.normalized.text
        start = max(words.starts[first] + head - quoted[0].start(), 0)
        end = min(words.end(last) - tail + len(piece) - quoted[-1].end(), len(text))
        region = text[start:end]
        if not region or OSA.distance(piece, region, score_cutoff=budget) > budget:
            return None
        changes = self._edits(piece, quoted, first=first, span=(start, end), cuts=(head, tail))
        return _Hit(start, end, fuzz.ratio(piece, region), "fuzzy", changes)

    def _beside(self, said: str, first: int, last: int, offset: int) -> bool:
        """Is the quote's edge word, taken as a slip, the content's word just beside the
        region? Then the quote is that text with a word dropped ("Je peux" for "Je ne
        peux" would otherwise match "ne peux" with "j" for "n"), not a slip."""
        texts = self._words.texts
        neighbour = first - 1 if offset == 0 else last + 1
        return 0 <= neighbour < len(texts) and texts[neighbour] == said

    def _edits(
        self,
        piece: str,
        quoted: list[re.Match[str]],
        *,
        first: int,
        span: tuple[int, int],
        cuts: tuple[int, int],
    ) -> list[SlipEdit]:
        """One edit per word or separator the quote got wrong, in content order."""
        words, text = self._words, self.normalized.text
        (start, end), (head, tail) = span, cuts
        # Pairs of (quote text, content offset it aligns with, content end): every word and
        # every stretch between, around the first and after the last.
        bounds = [(0, start)]
        for offset, word in enumerate(quoted):
            number = first + offset
            found_start = words.starts[number] + (head if offset == 0 else 0)
            found_end = words.end(number) - (tail if offset == len(quoted) - 1 else 0)
            bounds += [(word.start(), found_start), (word.end(), found_end)]
        bounds.append((len(piece), end))
        edits = []
        for (said_start, found_start), (said_end, found_end) in pairwise(bounds):
            said, found = piece[said_start:said_end], text[found_start:found_end]
            if said != found:
                edits.append(slip_edit(said, found, self._origin_from(found_start), self.content))
        return edits

    def _origin_from(self, at: int) -> Callable[[int], tuple[int, int]]:
        """`Normalized.origin` for offsets counted from normalised offset `at`."""
        return lambda k: self.normalized.origin(at + k)


def locate(quote: str, content: str) -> Match | None:
    """Where `quote` is in `content` (offsets into `content`), or None if not grounded."""
    return Grounder(content).locate(quote)


def locate_all(quotes: Iterable[str], content: str) -> list[Match | None]:
    """`locate` for many quotes in one content, normalising the content at most once."""
    grounder = Grounder(content)
    return [grounder.locate(quote) for quote in quotes]


def ground_quotes(quotes: Iterable[str], content: str) -> list[QuoteVerdict]:
    """A verdict for every quote, grounded or not: none is ever dropped."""
    grounder = Grounder(content)
    return [QuoteVerdict(quote=quote, match=grounder.locate(quote)) for quote in quotes]
