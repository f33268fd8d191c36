"""Highlights built from offsets: the content is cut into text segments, never marked up.

A reviewer must see each grounded quote at its exact characters, and nothing in the content
may act as markup. So the content is split at every quote boundary (and around every
invisible or direction-changing character, shown as a badge) into plain-text segments; the
template wraps a segment in `<mark>` by its flags and lets the autoescaper escape the text.
No markup is ever inserted into the content string itself.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Literal

Strength = Literal["strong", "weak"]

#: Character categories shown as a badge instead of acting: controls (Cc), format characters
#: such as bidi overrides and zero-width joiners (Cf), line and paragraph separators.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
#: Controls that are layout a reader expects, kept as they are.
LAYOUT = "\n\t\r"


@dataclass(frozen=True)
class Highlight:
    """One grounded quote: `text[start:end]`, how strongly it matched, and whose it is."""

    start: int
    end: int
    strength: Strength
    finding: int
    quote: int


@dataclass(frozen=True)
class Segment:
    """A run of content with the same highlights over all of it."""

    text: str
    start: int
    strength: Strength | None  # the strongest highlight over it; None for plain text
    quotes: tuple[str, ...]  # "finding.quote" ids of every highlight over it
    invisible: bool = False  # one character shown as a badge (see `codepoint`)

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def codepoint(self) -> str:
        return f"U+{ord(self.text):04X}" if self.invisible else ""


#: Any character outside the Basic Multilingual Plane (emoji, historic scripts, tags).
ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@cache
def invisible_pattern() -> re.Pattern[str]:
    """A regex of the invisible characters of the BMP in this Python's Unicode tables.

    Built once from the tables, as ranges: a character class of ranges is scanned about as
    fast as `markupsafe.escape` runs, while adding the few astral ranges (tag characters,
    musical format marks) to it made the scan 5x slower. Those are checked one by one among
    the astral characters instead (`invisible_positions`).
    """
    ranges: list[list[int]] = []
    for c in range(0x10000):
        if _invisible(chr(c)):
            if ranges and ranges[-1][1] == c - 1:
                ranges[-1][1] = c
            else:
                ranges.append([c, c])
    body = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{body}]")


def invisible_positions(text: str) -> set[int]:
    """Offsets of every invisible character of `text` (controls, format, separators)."""
    found = {m.start() for m in invisible_pattern().finditer(text)}
    found.update(m.start() for m in ASTRAL.finditer(text) if _invisible(m.group()))
    return found


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in INVISIBLE_CATEGORIES and char not in LAYOUT


def segments(text: str, highlights: list[Highlight]) -> list[Segment]:
    """Cut `text` at every highlight boundary and around every invisible character.

    Joining the segments' text gives back `text` exactly. Highlights outside the text are
    clipped to it; overlapping highlights both cover the overlap.
    """
    n = len(text)
    spans = [(min(h.start, n), min(h.end, n), h) for h in highlights]
    spans = [(s, e, h) for s, e, h in spans if s < e]
    cuts = {0, n}
    for start, end, _ in spans:
        cuts.update((start, end))
    invisible = invisible_positions(text)
    for i in invisible:
        cuts.update((i, i + 1))
    opening: dict[int, list[Highlight]] = {}
    for start, _, h in spans:
        opening.setdefault(start, []).append(h)
    ends = {id(h): end for _, end, h in spans}
    active: list[Highlight] = []
    out: list[Segment] = []
    ordered = sorted(cuts)
    for start, end in itertools.pairwise(ordered):
        # A sweep: highlights open at their start and drop out once their end is passed.
        active = [h for h in active if ends[id(h)] > start] + opening.get(start, [])
        strength: Strength | None = None
        if active:
            strength = "strong" if any(h.strength == "strong" for h in active) else "weak"
        out.append(
            Segment(
                text=text[start:end],
                start=start,
                strength=strength,
                quotes=tuple(f"{h.finding}.{h.quote}" for h in active),
                invisible=start in invisible,
            )
        )
    return out
