"""Normalising text for grounding, with the map back to the original offsets.

The same function serves content and quote: typographic quotes and dashes unified,
zero-width characters and soft hyphens dropped, Unicode NFKC, casefolding, whitespace runs
collapsed to one space. A quote is then split at ellipses (`...`, `…`, `[...]`, `[…]`) into
pieces that must appear in order, and each piece is trimmed of leading and trailing
punctuation.

Speed: most characters of any script normalise to exactly one character on their own
(Arabic and Han letters to themselves, "A" to "a"). Those are translated in bulk by
`str.translate` with a table built from the content's own distinct characters, and map
one to one; only the rest (a letter with combining marks, "ﬁ", "ß", runs of whitespace)
goes through the cluster-by-cluster path. So normalising costs a few C passes over the
text in every script, not a Python step per character.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

__all__ = [
    "MIN_QUOTE_CHARS",
    "Normalized",
    "has_substance",
    "is_filler",
    "normalize",
    "quote_pieces",
]

#: A quote must carry at least this many letters/digits (or symbols, for emoji-only text):
#: "a" or "I" occur in nearly any content, so quoting them grounds nothing; "BS" is a real
#: human-marked toxic span, so two is the floor.
MIN_QUOTE_CHARS = 2

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
_ELLIPSIS = re.compile(r"\[\s?\.{3,}\s?\]|\.{3,}")
_ALNUM = re.compile(r"[^\W_]")
# Surely plain: printable ASCII and letters of common scripts that are NFKC-stable,
# caseless and join nothing (Hebrew, Arabic, Devanagari, Thai, kana, CJK, Hangul).
_PLAIN = re.compile(
    "[!-~\u05d0-\u05ea\u0621-\u063a\u0641-\u064a\u0905-\u0939\u0e01-\u0e30"
    "\u3041-\u3096\u30a1-\u30fa\u4e00-\u9fff\uac00-\ud7a3]+"
)
# Past this many distinct chars to replace, one translation table is faster.
_MAX_REPLACED = 32
# A run of whitespace collapses to one space; a lone whitespace char is translated to one.
_SPACE_RUN = r"\s{2,}"


@dataclass(frozen=True, slots=True)
class Normalized:
    """Normalised text and the map back to the original offsets, in segments.

    Segment `i` starts at normalised offset `heads[i]` and came from the original at
    `origins[i]`: one char for one char when `ends[i]` is -1 (a translated run), else every
    char of it came from the whole of `[origins[i], ends[i])` (a cluster, or a whitespace
    run). A few segments per odd char, not two integers per char: building those arrays
    cost more than normalising.
    """

    text: str
    heads: array[int]
    origins: array[int]
    cluster_ends: array[int]

    def origin(self, at: int) -> tuple[int, int]:
        """The original `[start, end)` that normalised char `text[at]` came from."""
        i = bisect_right(self.heads, at) - 1
        if self.cluster_ends[i] < 0:
            start = self.origins[i] + at - self.heads[i]
            return start, start + 1
        return self.origins[i], self.cluster_ends[i]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span that normalised `text[start:end]` (end > start) came from."""
        return self.origin(start)[0], self.origin(end - 1)[1]


# ----------------------------------------------------------------------------- one char


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


@lru_cache(maxsize=65536)
def _one_to_one(char: str) -> str | None:
    """What `char` normalises to when that is one char that joins nothing, else None.

    Whitespace is one space: only runs of it need collapsing, and those are found apart.
    """
    if char.isspace():
        return " "
    if _joins_previous(char):
        return None
    folded = _fold_uncached(char)
    if len(folded) != 1 or _joins_previous(folded):
        return None
    return folded


# ----------------------------------------------------------------------------- building


def _translated(text: str) -> tuple[str, re.Pattern[str]]:
    """`text` with every one-to-one char normalised, offsets unchanged; and a pattern for
    the odd rest, which the caller folds cluster by cluster."""
    # `str.lower` and `str.replace` are fast C passes in every script, where `str.translate`
    # looks each non-ASCII char up in a dict. So: chars whose lowercase is their normal form
    # are left to `lower`; a few others that become one lowercase char ("，" → ",", "’" →
    # "'", a lone newline → " ") are replaced first; the rest are odd, folded one by one.
    # Only chars not surely plain are looked at.
    lowered = text.lower()
    if len(lowered) != len(text):  # "İ" lowercases to two chars: translate, char by char
        return _translated_by_table(text)
    candidates = set(text if text.isascii() else _PLAIN.sub("", text))
    replace: list[tuple[str, str]] = []
    odd: list[str] = []
    for char in candidates:
        folded = _one_to_one(char)
        if folded == char.lower() and char != "Σ":  # "Σ" lowercases by context ("ς")
            continue
        if folded is None or folded.lower() != folded or char == "Σ":
            odd.append(char)
        else:
            replace.append((char, folded))
    if len(replace) > _MAX_REPLACED:
        return _translated_by_table(text)
    for char, folded in replace:
        text = text.replace(char, folded)
    return (text.lower() if replace else lowered), _odd_pattern("".join(sorted(odd)))


def _translated_by_table(text: str) -> tuple[str, re.Pattern[str]]:
    """`_translated` through one translation table of every one-to-one char."""
    table: dict[int, str] = {}
    odd: list[str] = []
    for char in set(text):
        folded = _one_to_one(char)
        if folded is None:
            odd.append(char)
        elif folded != char:
            table[ord(char)] = folded
    return text.translate(table), _odd_pattern("".join(sorted(odd)))


@lru_cache(maxsize=1024)
def _odd_pattern(odd: str) -> re.Pattern[str]:
    """Each odd char with the marks after it, with the char before it if it is a mark (a
    base letter takes its marks along), and every whitespace run."""
    # Cached: comments share their few odd chars ("\n", "’"), and compiling a pattern
    # costs more than normalising a comment.
    marks = re.escape("".join(c for c in odd if _joins_previous(c)))
    others = re.escape("".join(c for c in odd if not _joins_previous(c)))
    alternatives = [_SPACE_RUN]
    if marks:
        alternatives.append(f".?[{marks}]+")
    if others:
        alternatives.append(f"[{others}][{marks}]*" if marks else f"[{others}]")
    return re.compile("|".join(alternatives), re.DOTALL)


def normalize(text: str) -> Normalized:
    """Normalise `text` for grounding, keeping the map back to its original offsets."""
    translated, odd = _translated(text)
    matches = list(odd.finditer(text))
    groups = list(map(re.Match.group, matches))
    folded = [" " if group.isspace() else _fold(group) for group in groups]
    clusters = {group for group in set(groups) if not group.isspace()}
    if any(not fold or any(c.isspace() for c in fold) for fold in map(_fold, clusters)):
        # A cluster that vanishes or holds a space may bring two spaces together.
        return _normalize_collapsing(text, translated, matches, folded)
    # Otherwise no two spaces can meet: a whitespace run takes the spaces around it, so
    # runs and clusters alternate as they are, and the segments are built in bulk.
    starts = list(map(re.Match.start, matches))
    ends = list(map(re.Match.end, matches))
    run_starts, run_ends = [0, *ends], [*starts, len(text)]
    runs = [translated[a:b] for a, b in zip(run_starts, run_ends, strict=True)]
    # Interleaved by slice assignment: run 0, cluster 0, run 1, cluster 1, ..., last run.
    # A run may be empty: its segment shares its head with the next and is never used.
    parts: list[str] = runs + folded
    parts[0::2], parts[1::2] = runs, folded
    origins = run_starts + starts
    origins[0::2], origins[1::2] = run_starts, starts
    cluster_ends = [-1] * len(parts)
    cluster_ends[1::2] = ends
    heads = [0, *accumulate(map(len, parts))]
    heads.pop()
    return Normalized(
        "".join(parts), array("q", heads), array("q", origins), array("q", cluster_ends)
    )


def _normalize_collapsing(
    text: str, translated: str, matches: list[re.Match[str]], folded: list[str]
) -> Normalized:
    """`normalize`, one odd match at a time, collapsing spaces that meet."""
    parts: list[str] = []
    heads: array[int] = array("q")
    origins: array[int] = array("q")
    cluster_ends: array[int] = array("q")
    size, after_space, position = 0, False, 0
    for odd_match, fold in zip(matches, folded, strict=True):
        start, end = odd_match.span()
        if start > position:
            if after_space and translated[position] == " ":
                position += 1
            if start > position:
                parts.append(translated[position:start])
                heads.append(size)
                origins.append(position)
                cluster_ends.append(-1)
                size += start - position
                after_space = translated[start - 1] == " "
        kept = _collapse(fold, after_space=after_space)
        if kept:
            parts.append(kept)
            heads.append(size)
            origins.append(start)
            cluster_ends.append(end)
            size += len(kept)
            after_space = kept[-1] == " "
        position = end
    if after_space and translated[position : position + 1] == " ":
        position += 1
    if position < len(text):
        parts.append(translated[position:])
        heads.append(size)
        origins.append(position)
        cluster_ends.append(-1)
    return Normalized("".join(parts), heads, origins, cluster_ends)


def _collapse(folded: str, *, after_space: bool) -> str:
    """Whitespace in a folded cluster as one space, none right after another."""
    kept = []
    for char in folded:
        space = char.isspace()
        if not (space and after_space):
            kept.append(" " if space else char)
        after_space = space
    return "".join(kept)


# ----------------------------------------------------------------------------- quotes


def is_filler(char: str) -> bool:
    """What quote trimming removes from a piece's ends: spaces, punctuation, backticks."""
    return char.isspace() or char == "`" or unicodedata.category(char)[0] == "P"


def _trim(piece: str) -> str:
    start, end = 0, len(piece)
    while start < end and is_filler(piece[start]):
        start += 1
    while end > start and is_filler(piece[end - 1]):
        end -= 1
    return piece[start:end]


def quote_pieces(quote: str) -> tuple[str, ...]:
    """The normalised pieces of `quote` that must all be found, in order; () if none."""
    pieces = (_trim(p) for p in _ELLIPSIS.split(normalize(quote).text))
    return tuple(p for p in pieces if p)


def has_substance(quote: str) -> bool:
    """At least MIN_QUOTE_CHARS letters/digits (or symbols, in a quote with neither)."""
    # The gate before the exact step, so it must cost next to nothing: count letters and
    # digits with a regex, stopping as soon as there are enough.
    found = 0
    for _ in _ALNUM.finditer(quote):
        found += 1
        if found >= MIN_QUOTE_CHARS:
            return True
    if found:
        return False
    return sum(not is_filler(c) and c not in _ZERO_WIDTH for c in quote) >= MIN_QUOTE_CHARS
