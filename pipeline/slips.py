"""Copying slips: which differences between a quote and the content a slip may be.

A model that copies a quote may drop, double, change or swap a letter, or drop an
apostrophe. Such a quote still points at a real span, so it grounds, but weakly: it says
where, not that the content says exactly this. What must never ground is a quote that
differs by a whole word (a sibling sentence with another identity term, a negation added,
a word swapped), because that is a different statement.

The rules, per normalised piece of a quote:

- at most one slip per `SLIP_CHARS` characters of the piece (`slip_budget`, counting the
  letter a slip may have dropped), so a quote that had under 24 characters must be
  verbatim or normalised;
- at most one slip per word, and words align one to one, in order: no word added, dropped,
  merged, split or reordered;
- in scripts written without spaces (Han, kana, Thai: `pipeline.wordbreak`) a character
  is often a word of its own (不 "not", 女 "woman", 黑 "black"), so there a changed or
  dropped character is a changed word. Only a doubled character or two swapped ones are
  slips. On Multilingual HateCheck, 74 of 1,902 Mandarin sibling pairs of 24+ characters
  differ by exactly one changed character (女人 / 黑人): a budget that forgave it would
  ground 4 % of those whole-word changes.
"""

from __future__ import annotations

from collections.abc import Callable

from rapidfuzz.distance import OSA

from pipeline.models import SlipEdit, SlipKind
from pipeline.wordbreak import writes_without_spaces

__all__ = ["SLIP_CHARS", "slip_budget", "slip_edit", "word_cost"]

#: One slip is forgiven per this many characters of a piece: a 24-character quote is a few
#: words, long enough that one wrong letter cannot make it say something else unnoticed.
SLIP_CHARS = 24


def slip_budget(piece: str) -> int:
    """How many slips a normalised piece of a quote may carry."""
    # Counted with one char more: a 24-char quote with a dropped letter is 23 chars long.
    return (len(piece) + 1) // SLIP_CHARS


def word_cost(quoted: str, found: str) -> int | None:
    """Slips between a quote word and its counterpart, or None if they are different words."""
    if quoted == found:
        return 0
    if quoted.replace("'", "") == found.replace("'", ""):
        return 1  # a dropped or added apostrophe ("its", "dont")
    if OSA.distance(quoted, found, score_cutoff=1) > 1:
        return None
    return 1 if _kind_allowed(quoted, found) else None


def _kind_allowed(quoted: str, found: str) -> bool:
    """One OSA edit apart: is it a slip in this script (not a changed Han character)?"""
    if len(quoted) == len(found):
        diffs = [i for i, (a, b) in enumerate(zip(quoted, found, strict=True)) if a != b]
        if len(diffs) == 2:
            return True  # two letters swapped: the same letters, the same word
        changed = found[diffs[0]]
        return not (writes_without_spaces(changed) or writes_without_spaces(quoted[diffs[0]]))
    if len(quoted) > len(found):
        extra, at = _extra(quoted, found)
        # A doubled char is a slip in any script; another char added in a spaceless script
        # may be a word ("不").
        return not writes_without_spaces(extra) or _doubled(quoted, at)
    missing, _ = _extra(found, quoted)
    return not writes_without_spaces(missing)


def _extra(longer: str, shorter: str) -> tuple[str, int]:
    """The one char `longer` has that `shorter` lacks, and where."""
    at = next(
        (i for i, (a, b) in enumerate(zip(longer, shorter, strict=False)) if a != b), len(shorter)
    )
    return longer[at], at


def _doubled(text: str, at: int) -> bool:
    return (at > 0 and text[at - 1] == text[at]) or (
        at + 1 < len(text) and text[at + 1] == text[at]
    )


def slip_edit(
    quoted: str, found: str, origin: Callable[[int], tuple[int, int]], content: str
) -> SlipEdit:
    """The edit that turns `found` (content text, `origin(k)` maps its offset k back to the
    original) into `quoted`, two strings that differ by one slip."""
    head = 0
    while head < min(len(quoted), len(found)) and quoted[head] == found[head]:
        head += 1
    tail = 0
    while (
        tail < min(len(quoted), len(found)) - head
        and quoted[len(quoted) - 1 - tail] == found[len(found) - 1 - tail]
    ):
        tail += 1
    said, was = quoted[head : len(quoted) - tail], found[head : len(found) - tail]
    if not was:  # nothing of the content's: the quote added `said` before found[head]
        point = origin(head)[0] if head < len(found) else origin(len(found) - 1)[1]
        return SlipEdit(kind="added", start=point, end=point, found="", quoted=said)
    start, end = origin(head)[0], origin(head + len(was) - 1)[1]
    kind: SlipKind = "changed"
    if not said:
        kind = "dropped"
    elif len(said) == len(was) == 2 and said == was[::-1]:
        kind = "swapped"
    return SlipEdit(kind=kind, start=start, end=end, found=content[start:end], quoted=said)
