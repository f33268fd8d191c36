"""The simulated model's judgement: which rules, which verdicts, how sure, quoting what.

Deterministic given (content, rules, seed, sample). The model is right on clear cases and
unreliable near its decision boundary, like a real one:

- ideal verdict: evidence score s above `params.threshold` t;
- error probability e = base + (0.5 - base) * exp(-((s - t) / width)^2): a coin flip at the
  boundary, a small base rate far from it; the model's own verdict is the ideal one flipped
  with probability e (a mistake in its belief, so every sample shares it);
- the model's probability for its own verdict is 1 - e, which is exactly how often that
  verdict agrees with the ideal one; the responder distorts it per profile;
- at temperature > 0, each sample may draw the other verdict with its (tempered)
  probability, so agreement between samples carries the same information.

Rules scoring within `params.near_margin` below the threshold are "considered": the model
writes a finding for them, with verdict false unless it errs. Rules further away get no
finding and cannot be flipped, so clean content does not collect false positives from
every rule of a large policy set.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.sim.evidence import Evidence, Reading, assess, learn_cached
from pipeline.sim.reader import RuleView
from pipeline.sim.seeding import rng_for


@dataclass(frozen=True)
class ClassifierParams:
    #: Above it a rule is violated: a whole example scores ~0.9, a word in passing ~0.25.
    threshold: float = 0.5
    #: Rules scoring within this below the threshold get a (usually false) finding.
    near_margin: float = 0.2
    #: Error rate far from the boundary: even clear cases are occasionally missed.
    base_error: float = 0.02
    #: Width of the band around the threshold where the model is unreliable.
    width: float = 0.12
    #: Quotes are cut to at most this many characters, at word boundaries.
    max_quote: int = 120


DEFAULT_PARAMS = ClassifierParams()


@dataclass(frozen=True)
class Judgement:
    """One finding the model writes, before any profile distortion."""

    rule_id: str
    quotes: tuple[str, ...]
    explanation: str
    verdict: bool
    p_verdict: float  # the model's true probability of this verdict token (before distortion)
    score: float
    error: float
    ideal: bool
    #: Set by the hallucinating profile: "rule_id" (invented rule) or "quote" (paraphrased).
    corruption: str | None = None


def error_rate(score: float, params: ClassifierParams = DEFAULT_PARAMS) -> float:
    gap = (score - params.threshold) / params.width
    return params.base_error + (0.5 - params.base_error) * math.exp(-(gap**2))


# A sentence ends at .!? followed by a space or the end ("0.1 BTC" is one sentence), or at
# a line break.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n")


def quote_for(content: str, span: tuple[int, int], limit: int = DEFAULT_PARAMS.max_quote) -> str:
    """The sentence of `content` around `span`, verbatim, cut to at most `limit` chars."""
    a, b = span
    start = max((m.end() for m in _SENTENCE_END.finditer(content, 0, a)), default=0)
    stop = _SENTENCE_END.search(content, max(a, b - 1))
    end = len(content) if stop is None else stop.start() if stop.group() == "\n" else stop.end()
    if end - start > limit:
        # A window centred on the evidence, with both cuts moved out of the middle of a word.
        start = max(start, min(a, (a + b) // 2 - limit // 2))
        end = min(end, start + limit)
        if start > 0 and not content[start - 1].isspace() and not content[start].isspace():
            space = content.find(" ", start, max(a, start))
            start = space + 1 if space >= 0 else start
        if end < len(content) and not content[end - 1].isspace() and not content[end].isspace():
            space = content.rfind(" ", min(b, end), end)
            end = space if space > start else end
    quote = content[start:end].strip()
    return quote or content[a:b].strip() or content.strip()[:limit]


def _quotes(content: str, evidence: Evidence, params: ClassifierParams) -> tuple[str, ...]:
    quotes: list[str] = []
    for span in evidence.spans:
        quote = quote_for(content, span, params.max_quote)
        if quote and not any(quote in q or q in quote for q in quotes):
            quotes.append(quote)
        if len(quotes) == 2:  # models rarely quote more than twice per rule
            break
    return tuple(quotes)


def _explanation(rule: RuleView, evidence: Evidence, verdict: bool) -> str:
    terms = ", ".join(f"'{t}'" for t in evidence.matched[:3])
    cue = f" (cues: {terms})" if terms else ""
    if verdict:
        return f"The quoted text matches the rule '{rule.title}'{cue}."
    return f"Considered under '{rule.title}'{cue}, but the quoted text does not meet the rule."


def _tempered_alt(p_main: float, temperature: float) -> float:
    """Probability of sampling the other verdict at this temperature."""
    if temperature <= 0:
        return 0.0
    # Softmax of the two log-probabilities divided by the temperature.
    main = math.exp(math.log(max(p_main, 1e-12)) / temperature)
    alt = math.exp(math.log(max(1 - p_main, 1e-12)) / temperature)
    return alt / (main + alt)


def judge(
    rules: Sequence[RuleView],
    content: str,
    *,
    seed: int,
    sample: int = 0,
    temperature: float = 0.0,
    params: ClassifierParams = DEFAULT_PARAMS,
) -> list[Judgement]:
    """The findings the model writes for one sample, in the order the rules appear."""
    models = learn_cached(tuple(rules))
    reading = Reading.of(content)
    judgements: list[Judgement] = []
    for model in models:
        evidence = assess(model, reading)
        s = evidence.score
        if s < params.threshold - params.near_margin:
            continue
        ideal = s > params.threshold
        error = error_rate(s, params)
        belief = ideal != (rng_for(seed, content, model.rule.id, "flip").random() < error)
        verdict, p_verdict = belief, 1 - error
        draw = rng_for(seed, content, model.rule.id, "sample", sample).random()
        if draw < _tempered_alt(1 - error, temperature):
            verdict, p_verdict = not belief, error
        quotes = _quotes(content, evidence, params)
        if not quotes:
            continue
        judgements.append(
            Judgement(
                rule_id=model.rule.id,
                quotes=quotes,
                explanation=_explanation(model.rule, evidence, verdict),
                verdict=verdict,
                p_verdict=p_verdict,
                score=s,
                error=error,
                ideal=ideal,
            )
        )
    return judgements
