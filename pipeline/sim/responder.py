"""From judgements to what the model "generates": JSON text, tokens and their logprobs.

The JSON is written piece by piece so the offset of every verdict literal is known; the
verdict token is the one that starts at the space before it (` true` / ` false`). How the
logprobs look is the profile's business:

- calibrated: the verdict token carries the model's probability for its verdict, made
  overconfident (logit times `Profile.overconfidence`); the other verdict gets the rest of
  the mass; every other token sits near logprob 0 with a little noise;
- collapsed: every chosen token at exactly 0.0 and every alternative at -20 or below, as
  GPT-4.1-mini reports them, whatever the model's real uncertainty.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from pipeline.sim.classifier import Judgement
from pipeline.sim.profiles import Profile
from pipeline.sim.tokenizer import token_bytes

#: Plausible runner-up tokens for positions where nothing else competes.
_RUNNERS_UP = (
    ' "', '"', ",", " the", " a", " and", " to", ".", " of", " is", " that", '":', " in",
    " it", " I", "\n", " you", " not", " this", " be", " content", " rule", " null", "}",
)  # fmt: skip
#: Bounds keep log() finite: the model is never exactly certain.
_P_MIN, _P_MAX = 1e-6, 1 - 1e-6
#: Where collapsed logprobs put every alternative.
_COLLAPSED_FLOOR = -20.0


@dataclass(frozen=True)
class Rendered:
    content: str
    #: Char offset of the space before each verdict literal -> (verdict, model probability).
    verdicts: dict[int, tuple[bool, float]]


def render(judgements: Sequence[Judgement]) -> Rendered:
    """`{"findings": [...]}` in the schema's field order, as a model writes it."""
    out: list[str] = []
    length = 0
    verdicts: dict[int, tuple[bool, float]] = {}

    def put(text: str) -> None:
        nonlocal length
        out.append(text)
        length += len(text)

    put('{"findings": [')
    for i, j in enumerate(judgements):
        if i:
            put(", ")
        put(f'{{"rule_id": {_dump(j.rule_id)}, "quotes": {_dump(list(j.quotes))}, ')
        put(f'"explanation": {_dump(j.explanation)}, "verdict":')
        verdicts[length] = (j.verdict, j.p_verdict)
        put(f" {'true' if j.verdict else 'false'}}}")
    put("]}")
    return Rendered("".join(out), verdicts)


def _dump(value: object) -> str:
    # Real models write non-ASCII text as is, not as \u escapes.
    return json.dumps(value, ensure_ascii=False)


def overconfident(p: float, factor: float) -> float:
    """p with its logit multiplied by `factor`: what real models' verdict tokens show."""
    p = min(_P_MAX, max(_P_MIN, p))
    return 1 / (1 + math.exp(-factor * math.log(p / (1 - p))))


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": token_bytes(token)}


def _alternatives(token: str, rng: Random, count: int) -> list[str]:
    pool = [t for t in _RUNNERS_UP if t != token]
    return rng.sample(pool, min(count, len(pool)))


def _top(chosen: tuple[str, float], others: list[tuple[str, float]], k: int) -> list[Any]:
    ranked = sorted([chosen, *others], key=lambda entry: entry[1], reverse=True)
    return [_entry(t, round(lp, 6)) for t, lp in ranked[:k]]


def token_logprobs(
    tokens: Sequence[str],
    verdicts: dict[int, tuple[bool, float]],
    profile: Profile,
    k: int,
    rng: Random,
) -> list[dict[str, Any]]:
    """`choices[i].logprobs.content`: one entry per token, in order.

    Takes the tokens rather than the text: a truncated answer is a prefix of the tokens,
    and re-tokenising the cut text could split its last piece differently.
    """
    entries: list[dict[str, Any]] = []
    offset = 0
    for token in tokens:
        verdict = verdicts.get(offset) if token in (" true", " false") else None
        offset += len(token)
        if verdict is not None:
            chosen_true, p = verdict
            other = " false" if chosen_true else " true"
            if profile.logprobs == "collapsed":
                chosen_lp, others = 0.0, [(other, _COLLAPSED_FLOOR - 1 - rng.random())]
            else:
                p = overconfident(p, profile.overconfidence)
                chosen_lp = math.log(p)
                # Most of the rest goes to the other verdict, a sliver to malformed tokens.
                others = [(other, math.log((1 - p) * 0.98))]
                others += [
                    (t, math.log((1 - p) * 0.01) - i) for i, t in enumerate((" null", "true"))
                ]
        elif profile.logprobs == "collapsed":
            chosen_lp = 0.0
            alts = _alternatives(token, rng, k)
            others = [(t, _COLLAPSED_FLOOR - 0.5 - i - rng.random()) for i, t in enumerate(alts)]
        else:
            # Near-certain tokens: a small exponential dent below zero; the rest of the mass
            # goes to runners-up in geometric steps, as a peaked softmax spreads it.
            chosen_lp = -rng.expovariate(300.0)
            rest = max(1e-12, -math.expm1(chosen_lp))
            alts = _alternatives(token, rng, k)
            others = [(t, math.log(rest * 0.6) - 1.3 * i) for i, t in enumerate(alts)]
        entry = _entry(token, round(chosen_lp, 6))
        entry["top_logprobs"] = _top((token, chosen_lp), others, k)
        entries.append(entry)
    return entries
