"""The '+hallucinating' modifier: findings that cite rules which do not exist, or quote
words the content does not contain.

Both are what grounding and citation checks exist to catch. A corrupted finding keeps its
verdict and confidence: a model that invents a rule id is not less sure of itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from random import Random

from pipeline.sim.classifier import Judgement
from pipeline.sim.evidence import normalize
from pipeline.sim.reader import RuleView
from pipeline.sim.seeding import rng_for

#: Policy names models reach for from their training data rather than from the prompt.
_FOREIGN_POLICIES = ("HATE_SPEECH", "TOXICITY", "BULLYING", "PROFANITY", "ABUSE", "EXTREMISM")
_FILLERS = ("really", "totally", "basically", "honestly", "just", "clearly", "literally")
#: Word-level edits applied before giving up and wrapping the quote in a reported-speech frame.
_MAX_EDITS = 6


def invented_rule_id(rules: Sequence[RuleView], cited: str, rng: Random) -> str:
    """An id that looks right and is not in the prompt: HARASSMENT.9, HATE_SPEECH.1."""
    existing = {r.id for r in rules}
    policy = cited.rpartition(".")[0] or cited
    numbers = [
        int(n) for r in rules if r.policy == policy and (n := r.id.rpartition(".")[2]).isdigit()
    ]
    candidates = [f"{policy}.{max(numbers, default=0) + k}" for k in range(3, 9)]
    candidates += [f"{p}.{k}" for p in _FOREIGN_POLICIES for k in (1, 2, 3)]
    return rng.choice([c for c in candidates if c not in existing])


def _edit(words: list[str], rng: Random) -> None:
    """One word-level slip a paraphrasing model makes: swap, insert or reorder."""
    # Swapping or moving needs words to move; a one- or two-word quote can only grow.
    kind = rng.choice(("swap", "insert", "reorder") if len(words) > 2 else ("insert",))
    if kind == "swap":
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == "insert":
        words.insert(rng.randrange(len(words) + 1), rng.choice(_FILLERS))
    else:
        cut = rng.randrange(1, len(words))
        words[:] = words[cut:] + words[:cut]


def paraphrase(quote: str, content: str, rng: Random) -> str:
    """The quote with words swapped, inserted or moved: never a substring of the content."""
    haystack = normalize(content)[0]
    words = quote.split()
    for _ in range(_MAX_EDITS):
        _edit(words, rng)
        candidate = " ".join(words)
        if candidate != quote and normalize(candidate)[0] not in haystack:
            # Two edits at least: a single slip in a long quote is what fuzzy grounding may
            # rightly forgive, and a paraphrase is not a slip.
            _edit(words, rng)
            candidate = " ".join(words)
            if normalize(candidate)[0] not in haystack:
                return candidate
    return f"they said {quote} and meant it"


def corrupt(
    judgements: Sequence[Judgement],
    rules: Sequence[RuleView],
    content: str,
    *,
    rate: float,
    seed: int,
    sample: int,
) -> list[Judgement]:
    """Each finding, corrupted with probability `rate`: half bad rule ids, half bad quotes."""
    out: list[Judgement] = []
    for j in judgements:
        rng = rng_for(seed, content, j.rule_id, sample, "hallucinate")
        if rng.random() >= rate:
            out.append(j)
        elif rng.random() < 0.5:  # an even split between the two kinds
            out.append(
                replace(j, rule_id=invented_rule_id(rules, j.rule_id, rng), corruption="rule_id")
            )
        else:
            quotes = (paraphrase(j.quotes[0], content, rng), *j.quotes[1:])
            out.append(replace(j, quotes=quotes, corruption="quote"))
    return out
