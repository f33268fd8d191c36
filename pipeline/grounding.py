"""Grounding: find each quote the model gave in the content it claims to quote.

A quote is grounded when it is in the content: verbatim (`exact`), equal after
normalisation (`normalized`), or with a few letter slips in a long quote (`fuzzy`). Steps
run cheapest first, so a verbatim quote costs one `str.find`.

Normalisation (the same function for content and quote): typographic quotes and dashes
unified, zero-width characters and soft hyphens dropped, Unicode NFKC, casefolding,
whitespace runs collapsed to one space. A quote is then split at ellipses (`...`, `…`,
`[...]`, `[…]`) into pieces that must appear in order, and each piece is trimmed of
leading and trailing punctuation.

Fuzzy matching forgives only near-verbatim slips: at most one edit per
`FUZZY_CHARS_PER_EDIT` characters of a piece, and every word of the piece must have a
near-identical counterpart, in order and one to one, among the words of the matched
region. So a swapped, inserted, dropped or reordered word is never grounded.

Everything here is pure: no I/O, no logging. The caller records the verdicts.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, Indel

from pipeline.models import Match, MatchMethod, QuoteVerdict

__all__ = [
    "FUZZY_CHARS_PER_EDIT",
    "Grounder",
    "Normalized",
    "ground_quotes",
    "locate",
    "locate_all",
    "normalize",
    "quote_pieces",
]

#: A piece of this many characters may carry one edit; shorter pieces get no fuzzy at all,
#: because in a short quote one edit can turn a word into another word.
FUZZY_CHARS_PER_EDIT = 25
#: Words shorter than this must match exactly: "not"/"now", "his"/"hiss" are different words.
SHORT_WORD = 4
#: Words at least this long may carry two slips (one is the rule for the rest).
LONG_WORD = 12

# Applied before NFKC (which would turn ″ into two primes) and again after it.
_FOLD = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′", "'"),
        **dict.fromkeys("“”„‟″", '"'),
        # Hyphen and non-breaking hyphen too: NFKC leaves them, and they are dashes in text.
        **dict.fromkeys("–—‒―−‐‑", "-"),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff\u00ad"),
    }
)
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff\u00ad")
# Printable ASCII with single spaces: normalises to its lowercase, one char for one char.
# Taking whole runs at once keeps normalising English text a few regex calls per line.
_SIMPLE = re.compile(r"[!-~]+(?: [!-~]+)*")
_SPACE = re.compile(r"\s+")
_ELLIPSIS = re.compile(r"\[\s?\.{3,}\s?\]|\.{3,}")
# Apostrophes and hyphens inside a word keep it one word, so "don't" vs "dont" is a slip.
_WORD = re.compile(r"\w+(?:['-]\w+)*")
_ALNUM = re.compile(r"[^\W_]")
_METHOD_RANK: dict[MatchMethod, int] = {"exact": 0, "normalized": 1, "fuzzy": 2}


# ----------------------------------------------------------------------------- normalising


@dataclass(frozen=True, slots=True)
class Normalized:
    """Normalised text, and for each of its chars the original `[start, end)` it came from."""

    text: str
    starts: array[int]
    ends: array[int]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that normalised `text[start:end]` (end > start) came from."""
        return self.starts[start], self.ends[end - 1]


def _fold(cluster: str) -> str:
    # Non-ASCII text repeats a few thousand clusters; a cache makes each one a dict lookup.
    # Only short ones are cached: a hostile cluster (a char with 10,000 marks) must not stay.
    return _fold_cached(cluster) if len(cluster) <= 4 else _fold_uncached(cluster)


def _fold_uncached(cluster: str) -> str:
    # NFKC, casefold, NFKC again: casefolding can produce text that is not NFKC ("ǰ").
    nfkc = unicodedata.normalize("NFKC", cluster.translate(_FOLD))
    return unicodedata.normalize("NFKC", nfkc.casefold()).translate(_FOLD)


_fold_cached = lru_cache(maxsize=65536)(_fold_uncached)


@lru_cache(maxsize=65536)
def _joins_previous(char: str) -> bool:
    # A char that NFKC may compose with the one before it: combining marks, and the Hangul
    # vowel and final jamo. Such chars are normalised with their base, never alone. Zero-width
    # chars join too: they vanish, so "e", ZWSP, U+0301 must still compose to "é".
    code = ord(char)
    return (
        char in _ZERO_WIDTH
        or unicodedata.category(char)[0] == "M"
        or 0x1160 <= code <= 0x11FF
        or 0xD7B0 <= code <= 0xD7FF
    )


class _Builder:
    """Accumulates normalised text and its offset map; collapses whitespace as it goes."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.starts: array[int] = array("q")
        self.ends: array[int] = array("q")
        self.after_space = False

    def run(self, text: str, start: int, end: int) -> None:
        """Printable ASCII, one char for one char."""
        self.parts.append(text[start:end].lower())
        self.starts.extend(range(start, end))
        self.ends.extend(range(start + 1, end + 1))
        self.after_space = False

    def emit(self, folded: str, start: int, end: int) -> None:
        """Every char of `folded` came from the whole of `[start, end)`."""
        for char in folded:
            space = char.isspace()
            if space and self.after_space:
                continue
            self.after_space = space
            self.parts.append(" " if space else char)
            self.starts.append(start)
            self.ends.append(end)

    def build(self) -> Normalized:
        return Normalized("".join(self.parts), self.starts, self.ends)


def normalize(text: str) -> Normalized:
    """Normalise `text` for grounding, keeping the map back to its original offsets."""
    out = _Builder()
    size, i = len(text), 0
    while i < size:
        simple = _SIMPLE.match(text, i)
        if simple:
            end = simple.end()
            if end < size and _joins_previous(text[end]):
                end -= 1  # the run's last char belongs with the marks that follow it
            if end > i:
                out.run(text, i, end)
                i = end
                continue
        space = _SPACE.match(text, i)
        if space:
            out.emit(" ", i, space.end())
            i = space.end()
            continue
        j = i + 1
        while j < size and _joins_previous(text[j]):
            j += 1
        out.emit(_fold(text[i:j]), i, j)
        i = j
    return out.build()


def _is_filler(char: str) -> bool:
    return char.isspace() or char == "`" or unicodedata.category(char)[0] == "P"


def _trim(piece: str) -> str:
    start, end = 0, len(piece)
    while start < end and _is_filler(piece[start]):
        start += 1
    while end > start and _is_filler(piece[end - 1]):
        end -= 1
    return piece[start:end]


def quote_pieces(quote: str) -> tuple[str, ...]:
    """The normalised pieces of `quote` that must all be found, in order; () if none."""
    pieces = (_trim(p) for p in _ELLIPSIS.split(normalize(quote).text))
    return tuple(p for p in pieces if p)


#: A quote must carry at least this many letters/digits (or symbols, for emoji-only text):
#: "a" or "I" occur in nearly any content, so quoting them grounds nothing; "BS" is a real
#: human-marked toxic span, so two is the floor.
MIN_QUOTE_CHARS = 2


def _has_substance(quote: str) -> bool:
    # The gate before the exact step, so it must cost next to nothing: count letters and
    # digits with a regex, stopping as soon as there are enough.
    found = 0
    for _ in _ALNUM.finditer(quote):
        found += 1
        if found >= MIN_QUOTE_CHARS:
            return True
    if found:
        return False
    return sum(not _is_filler(c) and c not in _ZERO_WIDTH for c in quote) >= MIN_QUOTE_CHARS


# ----------------------------------------------------------------------------- fuzzy words


@dataclass(frozen=True, slots=True)
class _Words:
    """The words of a normalised text and where each starts."""

    texts: list[str]
    starts: list[int]

    @classmethod
    def of(cls, text: str) -> _Words:
        # findall + a comprehension: half the cost of one loop over match objects. No index
        # by word: one rapidfuzz pass over the words (`near`) costs less than building it.
        return cls(_WORD.findall(text), [word.start() for word in _WORD.finditer(text)])

    def end(self, number: int) -> int:
        return self.starts[number] + len(self.texts[number])

    def near(self, word: str, first: int) -> list[int]:
        """Positions, from `first` on, of every word `word` could be a slip of (a superset)."""
        # OSA <= the word's budget covers every slip `_word_cost` accepts; at least 1 even
        # for short words, whose only slip is a dropped apostrophe.
        allowed = max(_word_budget(len(word)), 1)
        similar = process.extract(
            word, self.texts[first:], scorer=OSA.distance, score_cutoff=allowed, limit=None
        )
        return [first + number for _, _, number in similar]


def _word_budget(length: int) -> int:
    if length < SHORT_WORD:
        return 0
    return 2 if length >= LONG_WORD else 1


def _is_transposition(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    diffs = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and a[diffs[0]] == b[diffs[1]]


def _word_cost(quoted: str, found: str) -> int | None:
    """Edits between a quote word and its counterpart, or None if they are different words.

    Slips are letters dropped, doubled (Indel) or swapped (transposition); a substituted
    letter costs two Indel edits, so in a word shorter than LONG_WORD it is not a slip.
    """
    if quoted == found:
        return 0
    if quoted.replace("'", "") == found.replace("'", ""):
        return 1  # a dropped apostrophe ("its", "dont") is a slip even in a short word
    # The shorter word decides: "the" for "then" is another word, not a dropped letter.
    allowed = _word_budget(min(len(quoted), len(found)))
    if allowed == 0:
        return None
    if _is_transposition(quoted, found):
        return 1  # Indel would count it twice
    edits: int = Indel.distance(quoted, found, score_cutoff=allowed)
    return edits if edits <= allowed else None


# ----------------------------------------------------------------------------- locating


@dataclass(frozen=True, slots=True)
class _Hit:
    """A piece found in the normalised content, `[start, end)` in normalised offsets."""

    start: int
    end: int
    score: float
    method: MatchMethod
    edits: int = 0


def cuts_word(content: str, start: int, end: int) -> bool:
    """Does `content[start:end]` begin or end in the middle of a word?"""
    inside_at_start = 0 < start < len(content) and (
        content[start - 1].isalnum() and content[start].isalnum()
    )
    inside_at_end = 0 < end < len(content) and content[end - 1].isalnum() and content[end].isalnum()
    return inside_at_start or inside_at_end


class Grounder:
    """One content against which many quotes are located; normalised once, when first needed.

    >>> Grounder("You are a “moron”.").locate('"MORON"')
    Match(start=11, end=16, score=100.0, method='normalized', cuts_word=False)
    """

    def __init__(self, content: str) -> None:
        self.content = content

    @cached_property
    def normalized(self) -> Normalized:
        return normalize(self.content)

    @cached_property
    def _words(self) -> _Words:
        return _Words.of(self.normalized.text)

    def locate(self, quote: str) -> Match | None:
        """Where `quote` is in the content, or None if it is not grounded."""
        if not _has_substance(quote):
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
        first = start = self.content.find(quote)
        while start >= 0 and cuts_word(self.content, start, start + len(quote)):
            start = self.content.find(quote, start + 1)
        return first if start < 0 else start

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
        return Match(
            start=start,
            end=end,
            score=min(h.score for h in hits),
            method=max((h.method for h in hits), key=_METHOD_RANK.__getitem__),
            cuts_word=cuts_word(self.content, start, end),
        )

    def _find_normalized(self, piece: str, position: int) -> _Hit | None:
        start = self.normalized.text.find(piece, position)
        if start < 0:
            return None
        return _Hit(start, start + len(piece), 100.0, "normalized")

    def _find_fuzzy(self, piece: str, position: int) -> _Hit | None:
        budget = len(piece) // FUZZY_CHARS_PER_EDIT
        quoted = list(_WORD.finditer(piece))
        if budget == 0 or not quoted:
            return None
        words = self._words
        first = bisect_left(words.starts, position)
        # Every quote word needs a counterpart, so the longest one's counterparts (the
        # rarest, usually) pin every candidate alignment of the piece's words. Not an edge
        # word if there is another: it may be cut mid-word, and then `near` misses it.
        inner = range(1, len(quoted) - 1) if len(quoted) > 2 else range(len(quoted))
        anchor = max(inner, key=lambda k: len(quoted[k].group()))
        firsts = {n - anchor for n in words.near(quoted[anchor].group(), first + anchor)}
        best: _Hit | None = None
        for candidate in sorted(firsts):
            hit = self._fuzzy_at(piece, quoted, candidate, budget)
            if hit is not None and (best is None or hit.edits < best.edits):
                best = hit
                if hit.edits == 1:
                    break  # the fewest possible (0 would have been a normalized match)
        return best

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
        cost: int | None
        for offset, word in enumerate(quoted):
            said, found = word.group(), words.texts[first + offset]
            # A quote may start or end mid-word ("...to say the lea"): an edge word that is
            # verbatim part of its counterpart is a cut, not a slip ("fuck" of "fucks").
            if offset == 0 and found.endswith(said):
                cost, head = 0, len(found) - len(said)
            elif offset == len(quoted) - 1 and found.startswith(said):
                cost, tail = 0, len(found) - len(said)
            else:
                cost = _word_cost(said, found)
            if cost is None or edits + cost > budget:
                return None
            edits += cost
        # Whatever the piece has around its first and last words (symbols, say) is compared
        # too: the whole region, separators included, must stay within the edit budget.
        text = self.normalized.text
        start = max(words.starts[first] + head - quoted[0].start(), 0)
        end = min(words.end(last) - tail + len(piece) - quoted[-1].end(), len(text))
        region = text[start:end]
        edits = OSA.distance(piece, region, score_cutoff=budget)
        if edits > budget:
            return None
        return _Hit(start, end, fuzz.ratio(piece, region), "fuzzy", edits)


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
