"""Reads the confidence signal out of a completion's token logprobs.

The JSON answer travels in the message content, so its logprobs are there too. Tokens are
laid end to end to give each one its character offsets in the content; each finding's
`verdict` value is located in the JSON by a small scanner; the token that starts that value
carries the model's probability mass on `true` against `false` in its top_logprobs.
Tokenisations differ between models (`true`, ` true`, `tr`+`ue`, `":true`), so alternatives
are compared by what they would have written at the value's offset.

No logprobs from the provider means no signal, and the report says so plainly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from openai.types.chat import ChatCompletion
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob

from pipeline.models import CompletionStats, SignalReport, TokenLogprob, TopLogprob, VerdictSignal

#: A token at logprob above this is "certain"; a share near 1 of them is what collapse looks like.
ZERO_LOGPROB = -1e-4
VERDICT_KEY = "verdict"


@dataclass(frozen=True)
class Signal:
    report: SignalReport
    verdicts: list[VerdictSignal]


def read_signal(completion: ChatCompletion, n_findings: int) -> Signal:
    """Per-finding verdict probabilities (in finding order) and whole-completion stats."""
    choice = completion.choices[0]
    content = choice.message.content or ""
    logprobs = choice.logprobs.content if choice.logprobs else None
    if not logprobs:
        note = "the provider returned no logprobs; no confidence signal for this item"
        return Signal(SignalReport(available=False, note=note), _none(n_findings, note))
    stats = completion_stats(logprobs)
    joined = "".join(t.token for t in logprobs)
    base = content.find(joined) if joined != content else 0
    if base < 0:
        note = "the logprob tokens do not spell the message content; cannot place verdicts"
        return Signal(
            SignalReport(available=False, note=note, stats=stats), _none(n_findings, note)
        )
    offsets = _token_offsets(logprobs, base)
    positions = verdict_positions(content)
    verdicts = []
    for index in range(n_findings):
        if index >= len(positions):
            verdicts.append(VerdictSignal(p_true=None, note="verdict not found in the JSON text"))
            continue
        verdicts.append(_verdict_signal(positions[index], offsets, logprobs))
    return Signal(SignalReport(available=True, stats=stats), verdicts)


def _none(n: int, note: str) -> list[VerdictSignal]:
    return [VerdictSignal(p_true=None, note=note) for _ in range(n)]


def _token(t: ChatCompletionTokenLogprob) -> TokenLogprob:
    return TokenLogprob(
        token=t.token,
        logprob=t.logprob,
        top=[TopLogprob(token=a.token, logprob=a.logprob) for a in t.top_logprobs],
    )


def _token_offsets(logprobs: Sequence[ChatCompletionTokenLogprob], base: int) -> list[int]:
    offsets, position = [], base
    for t in logprobs:
        offsets.append(position)
        position += len(t.token)
    return offsets


def _verdict_signal(
    value_start: int, offsets: list[int], logprobs: Sequence[ChatCompletionTokenLogprob]
) -> VerdictSignal:
    index = _token_at(value_start, offsets, logprobs)
    if index is None:
        return VerdictSignal(p_true=None, note="no token covers the verdict")
    # Only the tokens around a verdict become records: converting every token of the
    # answer (with its alternatives) cost more than the rest of the signal stage.
    token = _token(logprobs[index])
    # What the chosen token wrote before the value (e.g. `":` in `":true`) must also be
    # what an alternative wrote, for that alternative to be a competing verdict.
    lead = token.token[: value_start - offsets[index]]
    alternatives = {a.token: a.logprob for a in token.top}
    alternatives.setdefault(token.token, token.logprob)
    mass = {True: 0.0, False: 0.0}
    for text, logprob in alternatives.items():
        side = _verdict_side(text, lead)
        if side is not None:
            mass[side] += math.exp(logprob)
    total = mass[True] + mass[False]
    covered = [_token(t) for t in logprobs[index : index + 2]]
    if total == 0:
        return VerdictSignal(p_true=None, tokens=covered, note="no true/false among alternatives")
    return VerdictSignal(p_true=mass[True] / total, tokens=covered)


def _token_at(
    char: int, offsets: list[int], logprobs: Sequence[ChatCompletionTokenLogprob]
) -> int | None:
    for i, start in enumerate(offsets):
        if start <= char < start + len(logprobs[i].token):
            return i
    return None


def _verdict_side(text: str, lead: str) -> bool | None:
    if not text.startswith(lead):
        return None
    word = text[len(lead) :].strip().strip('"').lower()
    if not word:
        return None
    if "true".startswith(word) or word.startswith("true"):
        return True
    if "false".startswith(word) or word.startswith("false"):
        return False
    return None


def completion_stats(logprobs: Sequence[ChatCompletionTokenLogprob]) -> CompletionStats:
    values = [t.logprob for t in logprobs]
    margins = []
    for t in logprobs:
        others = sorted((a.logprob for a in t.top_logprobs if a.token != t.token), reverse=True)
        if others:
            margins.append(t.logprob - others[0])
    return CompletionStats(
        n_tokens=len(values),
        mean_logprob=sum(values) / len(values),
        min_logprob=min(values),
        share_at_zero=sum(v > ZERO_LOGPROB for v in values) / len(values),
        mean_top_margin=sum(margins) / len(margins) if margins else None,
    )


# ----------------------------------------------------------------------------- JSON scanner


def verdict_positions(text: str) -> list[int]:
    """Offsets of every `"verdict": <value>` value in a JSON text, in document order.

    A scanner rather than a regex: a quote may itself contain the text `"verdict": true`,
    and only a scanner that tracks strings knows it is inside one.
    """
    positions: list[int] = []
    i, n = 0, len(text)
    pending_key: str | None = None
    while i < n:
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i)
            literal = text[i + 1 : end]
            j = _skip_space(text, end + 1)
            if j < n and text[j] == ":":
                pending_key = literal
                i = j + 1
                continue
            pending_key = None
            i = end + 1
            continue
        if pending_key == VERDICT_KEY and not ch.isspace():
            positions.append(i)
        if not ch.isspace():
            pending_key = None
        i += 1
    return positions


def _string_end(text: str, start: int) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    return len(text)


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i
