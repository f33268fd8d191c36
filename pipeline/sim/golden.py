"""Synthetic labelled sets built from a policy set's own examples.

This is the data generator, not the model: it may read the policies directly. Items:

- `violation`: a rule's violating example among benign filler sentences (label true, the
  rule id, the example as it appears in the text as gold quote); some carry two;
- `hard_violation`: a violating example reworded by two or three slips (a word that is not
  what makes it a violation dropped, an adverb slipped in, neighbours swapped): still a
  violation, but further from the wording the model learnt, so it is missed more often;
- `near_miss`: a rule's non-violating example (label false): shares words with a violation;
- `mention`: words of a violating example mentioned, not used ("why do people write
  'cancer' in the comments?"): benign, but a shallow reader sees the same words;
- `clean`: filler only (label false).

Sentence order, filler, casing and final punctuation vary, so not every item is trivial.
Same rules, n and seed give the same set.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from pipeline.sim.evidence import content_terms

if TYPE_CHECKING:
    from pipeline.policies import PolicySet


class RuleLike(Protocol):
    """What the generator needs of a rule (`pipeline.policies.Rule` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def violating(self) -> Sequence[str]: ...
    @property
    def non_violating(self) -> Sequence[str]: ...


class Label(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    violation: bool
    rule_ids: list[str] = Field(default_factory=list)
    quotes: list[str] = Field(default_factory=list)


class LabelledItem(BaseModel):
    """One line of a golden or demo set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    text: str
    meta: dict[str, JsonValue] = Field(default_factory=dict)
    label: Label


FILLER = (
    "I spent the morning repotting the basil on the balcony.",
    "The train was twenty minutes late again, so I read on the platform.",
    "Does anyone know a good recipe for lentil soup?",
    "Our team finally shipped the release after three long weeks.",
    "The museum opens a new exhibit on Roman glass next month.",
    "My cat has decided the laundry basket is her new bed.",
    "We are meeting at the library at six to study for the exam.",
    "The forecast says rain all weekend, which suits me fine.",
    "I just finished a novel about a lighthouse keeper and loved it.",
    "Can someone explain how compound interest works?",
    "The bakery on the corner sells out of croissants by nine.",
    "Thanks for the feedback on my draft, it helped a lot.",
    "The hiking trail was muddy but the view from the top was worth it.",
    "Remember to bring a reusable bag to the market.",
    "The conference talk on databases was better than I expected.",
    "My grandmother taught me to knit when I was ten.",
    "The city is repaving the main road, so expect detours.",
    "I think the second season of the show was the strongest.",
    "Please review the attached schedule before Friday.",
    "The kids built a fort out of couch cushions this afternoon.",
    "I tried the new coffee place and the espresso was excellent.",
    "Our neighbourhood cleanup starts at ten on Saturday.",
    "The printer on the third floor is out of toner again.",
    "We watched the sunset from the pier and talked for hours.",
    "The budget meeting moved to Thursday afternoon.",
    "I adopted a rescue dog last month and he is settling in well.",
    "Does the gym open early on public holidays?",
    "The lecture on medieval trade routes was fascinating.",
    "I am learning to play the piano, slowly.",
    "The garden centre has a sale on tulip bulbs this week.",
)
_ADVERBS = ("really", "honestly", "seriously", "just", "totally", "literally")

#: Share of each kind; the rest is `clean`.
MIX = {"violation": 0.35, "hard_violation": 0.15, "near_miss": 0.2, "mention": 0.1}
#: A word a violating example uses, mentioned rather than used: benign, but a shallow reader
#: sees the same word. `{w}` and `{v}` are two words of one violating example.
MENTIONS = (
    'Someone in the other thread wrote "{w}" and I had to look it up.',
    'Why do people keep saying "{w}" and "{v}" in the comments lately?',
    'Our linguistics class discussed how the word "{w}" changed meaning.',
    'The moderators published a list of words like "{w}" that get flagged.',
    'I misread the headline as "{w} {v}" and laughed at myself.',
)


def _vary(sentence: str, rng: Random) -> str:
    """Casing and final punctuation as people type them; the words stay the same."""
    roll = rng.random()
    if roll < 0.15:  # all lower case, as in chat
        sentence = sentence.lower()
    elif roll < 0.2:  # shouting
        sentence = sentence.upper()
    roll = rng.random()
    if roll < 0.15:
        sentence = sentence.rstrip(".!?") + "!!"
    elif roll < 0.3:
        sentence = sentence.rstrip(".")
    return sentence


def _reword(example: str, keep: set[str], rng: Random, edits: int) -> str:
    """`edits` slips that keep the meaning: drop a word not in `keep`, add an adverb, swap
    two neighbours. Words whose terms are in `keep` (what makes it a violation) stay."""
    words = example.split()
    for _ in range(edits):
        droppable = [i for i, w in enumerate(words) if not content_terms(w) & keep]
        roll = rng.random()
        if roll < 0.45 and len(droppable) > 1 and len(words) > 4:
            del words[rng.choice(droppable)]
        elif roll < 0.75 or len(words) < 3:
            words.insert(rng.randrange(1, len(words) + 1), rng.choice(_ADVERBS))
        else:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def _distinctive(rule: RuleLike) -> set[str]:
    bad = set().union(*(content_terms(e) for e in rule.violating))
    return bad - set().union(*(content_terms(e) for e in rule.non_violating))


def _compose(core: list[str], rng: Random, filler: int) -> str:
    sentences = [*core, *rng.sample(FILLER, filler)]
    rng.shuffle(sentences)
    return " ".join(sentences)


def _item(
    kind: str, rules: Sequence[RuleLike], rng: Random
) -> tuple[str, Label, dict[str, JsonValue]]:
    filler = rng.randint(0, 3)
    if kind in ("violation", "hard_violation"):
        picked = [rng.choice(rules)]
        if kind == "violation" and rng.random() < 0.1:
            picked.append(rng.choice([r for r in rules if r.id != picked[0].id] or rules))
        quotes = []
        for rule in picked:
            example = rng.choice(list(rule.violating))
            if kind == "hard_violation":
                example = _reword(example, _distinctive(rule), rng, rng.randint(2, 3))
            quotes.append(_vary(example, rng))
        ids = list(dict.fromkeys(r.id for r in picked))
        text = _compose(quotes, rng, filler)
        meta: dict[str, JsonValue] = {"kind": kind, "rules": list(ids)}
        return text, Label(violation=True, rule_ids=ids, quotes=quotes), meta
    if kind == "near_miss":
        rule = rng.choice([r for r in rules if r.non_violating])
        example = _vary(rng.choice(list(rule.non_violating)), rng)
        text = _compose([example], rng, filler)
        return text, Label(violation=False), {"kind": kind, "near_rule": rule.id}
    if kind == "mention":
        rule = rng.choice(rules)
        keep = _distinctive(rule)
        example = rng.choice(list(rule.violating))
        words = [w.strip(".,!?;:\"'") for w in example.split()]
        words = [w for w in words if content_terms(w) & keep] or [w for w in words if w]
        w, v = rng.sample(words, 2) if len(words) > 1 else (words[0], words[0])
        sentence = rng.choice(MENTIONS).format(w=w.lower(), v=v.lower())
        text = _compose([sentence], rng, filler)
        return text, Label(violation=False), {"kind": kind, "near_rule": rule.id}
    text = _compose([], rng, max(1, filler + 1))
    return text, Label(violation=False), {"kind": "clean"}


def generate(rules: Sequence[RuleLike], n: int, seed: int = 0) -> Iterator[LabelledItem]:
    """`n` labelled items drawn from the rules' examples."""
    if not rules:
        msg = "a golden set needs at least one rule"
        raise ValueError(msg)
    rng = Random(seed)
    kinds = list(MIX)
    weights = [*MIX.values()]
    for i in range(n):
        draw = rng.random()
        kind = "clean"
        for name, weight in zip(kinds, weights, strict=True):
            if draw < weight:
                kind = name
                break
            draw -= weight
        if kind == "near_miss" and not any(r.non_violating for r in rules):
            kind = "clean"
        text, label, meta = _item(kind, rules, rng)
        yield LabelledItem(id=f"golden-{seed}-{i:05d}", text=text, meta=meta, label=label)


def generate_from_policies(policies: PolicySet, n: int, seed: int = 0) -> Iterator[LabelledItem]:
    return generate(policies.rules, n, seed)


def write_jsonl(items: Iterable[LabelledItem], path: Path) -> int:
    """Write one item per line; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps(item.model_dump(mode="json"), ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path) -> list[LabelledItem]:
    with path.open(encoding="utf-8") as handle:
        return [LabelledItem.model_validate_json(line) for line in handle if line.strip()]
