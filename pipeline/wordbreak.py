"""Word boundaries by Unicode word segmentation (UAX #29), for any script.

A quote that starts or ends inside a word of the content ("ass" in "classic") is weak
evidence; to say so we need to know where words end. Runs of letters are not words in
every script: Chinese and Japanese are written without spaces, Thai too, and Devanagari
and Arabic letters carry combining marks that are not letters at all. UAX #29's default
word boundaries handle all of these: an ideograph is a word of its own, a mark belongs to
its letter, "don't" and "3.14" are one word each.

The segmenter is the `regex` module's `WORD` flag, under which `\\b` is the UAX #29
default word boundary. Chosen because it is maintained, C-fast, and already installed
(instructor depends on it); ICU (PyICU) adds dictionary segmentation for Thai and
Chinese but needs the system library and a compiler. Without a dictionary, UAX #29 breaks
between every two Han or Thai characters, so in those scripts no quote is ever "inside a
longer word": the safe side for a check that only ever adds review.
"""

from __future__ import annotations

import regex

__all__ = ["cuts_word", "is_boundary", "writes_without_spaces"]

_BOUNDARY = regex.compile(r"\b", regex.WORD)
# Non-alphanumeric chars that can sit inside a word: marks, connectors, apostrophes.
_JOINING = regex.compile(r"[\p{M}\p{Pc}’]")
# Scripts whose words are not separated by spaces: one character can be a whole word
# (不 "not", 女 "woman"), so a changed character there is a changed word, not a slip.
_SPACELESS = regex.compile(
    r"[\p{Ideographic}\p{Script=Hiragana}\p{Script=Katakana}\p{Line_Break=Complex_Context}]"
)


def is_boundary(text: str, at: int) -> bool:
    """Whether UAX #29 puts a word boundary at `text[at]` (the ends of text always are)."""
    if at <= 0 or at >= len(text):
        return True
    before, after = text[at - 1], text[at]
    if before.isascii() and after.isascii():
        # Fast path, no regex call: ASCII letters and digits join ("abc1"), anything else
        # next to them breaks (apostrophes and dots between letters aside, handled below).
        if before.isalnum() and after.isalnum():
            return False
        if not (before.isalnum() or after.isalnum()):
            return True
    return _BOUNDARY.match(text, at) is not None


def cuts_word(content: str, start: int, end: int) -> bool:
    """Does `content[start:end]` begin or end in the middle of a word?"""
    return _inside(content, start) or _inside(content, end)


def _inside(text: str, at: int) -> bool:
    # Word material on both sides, and no boundary between: a run of spaces has no boundary
    # inside it either (UAX #29 keeps horizontal whitespace together), but cuts no word.
    # The cheap test first: most quotes end next to a space or punctuation.
    if at <= 0 or at >= len(text):
        return False
    return _wordish(text[at - 1]) and _wordish(text[at]) and not is_boundary(text, at)


def _wordish(char: str) -> bool:
    if char.isalnum() or char in "_'.":
        return True
    return not char.isascii() and _JOINING.match(char) is not None


def writes_without_spaces(char: str) -> bool:
    """A character of a script written without spaces between words (Han, kana, Thai...)."""
    return _SPACELESS.match(char) is not None
