"""Evidence for each rule in a piece of content, and the verbatim span that shows it.

The simulated model reads like a shallow one. A rule's distinctive terms are the content
words of its violating examples that its non-violating examples do not use: what separates
"I hope you get cancer and die" from "I hope you get well soon". A rule's score mixes

- term evidence: a saturating sum of the idf weights of its distinctive terms found in the
  content (its shared words count a little: shallow readers are swayed by them too);
- fuzzy evidence: how closely one of its violating examples appears (rapidfuzz);
- minus how much closer one of its non-violating examples appears than any violating one,
  so a counter-example quoted word for word is recognised as one.

So a verbatim example scores near 1, a reworded one a little lower, one distinctive word
in passing ("what does 'cancer' mean?") near the decision boundary, clean text near 0.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz

from pipeline.sim.reader import RuleView

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    im youre dont cant wont isnt arent its thats theyre ive id ill also get got go going gonna
    one like really much many make made every anyone someone something thing things
    new week day days time year years think meet talk help better good great show hour hours
    see look come take give tell say said way today still even well right first last long
    little big use try ask feel start run move believe hold bring happen write sit stand pay
    hear play turn sure thank thanks please lot lots yes okay ok done back"""
# The second half is generic content words: without a corpus to weigh words by, a model that
# learns from a few examples would otherwise take "new" or "week" as evidence of a rule.
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Endings stripped so "threatens", "threatened" and "threatening" meet; no dictionary, so the
# stem is only required to keep three letters.
_SUFFIXES = ("ingly", "edly", "ing", "ed", "es", "ly", "s")

#: Weight of term evidence against fuzzy evidence.
TERM_WEIGHT = 0.5
#: Term mass (sum of idf weights) at which term evidence reaches 1 - 1/e: one rare
#: distinctive word gives ~0.5, two ~0.75, a whole example ~0.9.
TERM_SCALE = 5.0
#: Share of its weight a shared (non-distinctive) word of a violating example earns.
SHARED_CREDIT = 0.3
#: How hard a closer non-violating example pulls the score down.
COUNTER_WEIGHT = 0.6
#: Raw partial_ratio (0..1) at or below which an example counts as absent: an example
#: against unrelated sentences scores 0.45-0.55 on shared letters and short words alone.
FUZZY_FLOOR = 0.55


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    word = word.lower().replace("\u2019", "'").removesuffix("'s").replace("'", "")
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_terms(text: str) -> set[str]:
    """Stems of the content words of a text (stopwords and one- or two-letter words out)."""
    terms = set()
    for word in _WORD.findall(normalize(text)[0]):
        bare = word.replace("\u2019", "").replace("'", "")
        stemmed = stem(word)
        # Both forms checked: "talking" is as generic as "talk".
        if len(bare) > 2 and bare not in _STOPWORDS and stemmed not in _STOPWORDS:
            terms.add(stemmed)
    return terms


def normalize(text: str) -> tuple[str, list[int]]:
    """Lowercased, NFKC-folded text without format characters, and where each char came from.

    Zero-width and bidi-control characters (Unicode category Cf) are dropped so "k\u200bill"
    reads as "kill"; each kept character maps back to its index in the original, so a span
    found in the normalised text slices the original verbatim (format characters included).
    """
    chars: list[str] = []
    origin: list[int] = []
    for i, c in enumerate(text):
        if unicodedata.category(c) == "Cf":
            continue
        folded = unicodedata.normalize("NFKC", c).lower()
        chars.append(folded if len(folded) == 1 else c)
        origin.append(i)
    return "".join(chars), origin


@dataclass(frozen=True)
class RuleModel:
    """What the simulated model learnt about one rule from its prompt."""

    rule: RuleView
    violating: tuple[str, ...]  # the examples, normalised once here rather than per request
    non_violating: tuple[str, ...]
    distinctive: frozenset[str]  # terms of the violating examples not in the non-violating
    weights: dict[str, float]  # idf of every term of the rule's violating examples


@dataclass(frozen=True)
class Evidence:
    rule_id: str
    score: float  # in [0, 1]; the classifier compares it to its threshold
    spans: tuple[tuple[int, int], ...]  # spans of the original content, best first
    matched: tuple[str, ...]  # distinctive terms found


def learn(rules: Sequence[RuleView]) -> list[RuleModel]:
    """Each rule's distinctive terms, and every term's weight by rarity across rules."""
    bad = [set().union(*(content_terms(e) for e in rule.violating)) for rule in rules]
    df: dict[str, int] = {}
    for terms in bad:
        for t in terms:
            df[t] = df.get(t, 0) + 1
    models = []
    for rule, terms in zip(rules, bad, strict=True):
        good = set().union(*(content_terms(e) for e in rule.non_violating))
        weights = {t: math.log(1 + len(rules) / df[t]) for t in terms}
        models.append(
            RuleModel(
                rule,
                tuple(normalize(e)[0] for e in rule.violating),
                tuple(normalize(e)[0] for e in rule.non_violating),
                frozenset(terms - good),
                weights,
            )
        )
    return models


@lru_cache(maxsize=64)
def learn_cached(rules: tuple[RuleView, ...]) -> list[RuleModel]:
    # The system message repeats on every request of a policy version; learning from it once
    # keeps a request at a few milliseconds.
    return learn(rules)


def _similarity(example: str, text: str) -> tuple[float, tuple[int, int]]:
    """How well a normalised example appears in normalised text (0..1), and where."""
    if not example or not text:
        return 0.0, (0, 0)
    # The cutoff lets rapidfuzz give up early on the many examples that are nowhere near.
    found = fuzz.partial_ratio_alignment(example, text, score_cutoff=FUZZY_FLOOR * 100)
    if found is None:
        return 0.0, (0, 0)
    # partial_ratio slides the shorter string over the longer: a two-word content "matches"
    # inside a long example, which is no evidence of that example.
    raw = found.score / 100 * min(1.0, len(text) / len(example))
    where = (found.dest_start, found.dest_end) if len(example) <= len(text) else (0, len(text))
    return max(0.0, (raw - FUZZY_FLOOR) / (1 - FUZZY_FLOOR)), where


@dataclass(frozen=True)
class Reading:
    """A content read once for all rules: normalised text, where each char came from, words."""

    norm: str
    origin: list[int]
    words: list[tuple[int, int, str]]  # (start, end, stem) in the normalised text
    present: frozenset[str]

    @classmethod
    def of(cls, content: str) -> Reading:
        norm, origin = normalize(content)
        words = [(m.start(), m.end(), stem(m.group())) for m in _WORD.finditer(norm)]
        return cls(norm, origin, words, frozenset(w[2] for w in words))


def _to_original(span: tuple[int, int], origin: Sequence[int]) -> tuple[int, int]:
    if not origin:
        return (0, 0)
    a, b = span
    start = origin[min(a, len(origin) - 1)]
    return (start, origin[b - 1] + 1 if b > a else start)


def assess(model: RuleModel, reading: Reading) -> Evidence:
    """The rule's evidence score in the content and the spans (of the original) that show it."""
    rule, norm = model.rule, reading.norm
    present = reading.present & model.weights.keys()
    mass = sum(
        model.weights[t] * (1.0 if t in model.distinctive else SHARED_CREDIT) for t in present
    )
    terms = 1 - math.exp(-mass / TERM_SCALE)
    fuzzy, where = max((_similarity(e, norm) for e in model.violating), default=(0.0, (0, 0)))
    counter = max((_similarity(e, norm)[0] for e in model.non_violating), default=0.0)
    score = TERM_WEIGHT * terms + (1 - TERM_WEIGHT) * fuzzy
    score = max(0.0, score - COUNTER_WEIGHT * max(0.0, counter - fuzzy))

    # Spans: the closely matching example if there is one, then each distinctive word
    # found; with neither, the best partial alignment (the weak evidence a false positive
    # quotes).
    hits = [w for w in reading.words if w[2] in model.distinctive]
    spans = [where] if fuzzy >= 0.6 or not hits else []  # a "close" match
    spans.extend((a, b) for a, b, _ in hits)
    matched = tuple(dict.fromkeys(t for _, _, t in hits))
    originals = tuple(_to_original(span, reading.origin) for span in spans)
    return Evidence(rule.id, round(score, 6), originals, matched)
