"""The verdict probability read from real ChatCompletion objects, tokenised several ways."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from pipeline.signal import read_signal, verdict_positions


def completion(
    tokens: list[tuple[str, float, dict[str, float]]] | None, content: str | None = None
) -> ChatCompletion:
    """A real ChatCompletion whose logprobs are `tokens` = [(text, logprob, {alt: logprob})]."""
    text = content if content is not None else "".join(t for t, _, _ in tokens or [])
    logprobs: dict[str, Any] | None = None
    if tokens is not None:
        logprobs = {
            "content": [
                {
                    "token": t,
                    "logprob": lp,
                    "bytes": list(t.encode()),
                    "top_logprobs": [
                        {"token": a, "logprob": alp, "bytes": list(a.encode())}
                        for a, alp in {t: lp, **alts}.items()
                    ],
                }
                for t, lp, alts in tokens
            ]
        }
    return ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                    "logprobs": logprobs,
                }
            ],
        }
    )


def split(
    text: str, verdict_tokens: list[tuple[str, float, dict[str, float]]]
) -> list[tuple[str, float, dict[str, float]]]:
    """Tokens for `text` where the part before/after `<V>` is certain and <V> is given."""
    before, after = text.split("<V>")
    return [(before, 0.0, {}), *verdict_tokens, (after, 0.0, {})]


P = 0.8
LP_T, LP_F = math.log(P), math.log(1 - P)


class TestVerdictProbability:
    @pytest.mark.parametrize(
        ("template", "verdict_tokens"),
        [
            ('{"findings":[{"verdict": <V>}]}', [("true", LP_T, {"false": LP_F})]),
            ('{"findings":[{"verdict":<V>}]}', [(" true", LP_T, {" false": LP_F})]),
            ('{"findings":[{"verdict": <V>}]}', [("tr", LP_T, {"false": LP_F}), ("ue", 0.0, {})]),
            ('{"findings":[{"verdict<V>}]}', [('":true', LP_T, {'":false': LP_F, '": ': -9.0})]),
        ],
        ids=["true", "space-true", "tr+ue", "colon-true"],
    )
    def test_reads_p_true_whatever_the_tokenisation(
        self, template: str, verdict_tokens: list[tuple[str, float, dict[str, float]]]
    ) -> None:
        """P(true) is the true mass over true+false mass, for every tokenisation."""
        signal = read_signal(completion(split(template, verdict_tokens)), n_findings=1)
        assert signal.report.available
        assert signal.verdicts[0].p_true == pytest.approx(P)

    def test_false_verdict_still_gives_p_true(self) -> None:
        """A verdict of false carries P(true) from its alternatives."""
        tokens = split('{"findings":[{"verdict": <V>}]}', [("false", LP_F, {"true": LP_T})])
        assert read_signal(completion(tokens), 1).verdicts[0].p_true == pytest.approx(P)

    def test_collapsed_logprobs_give_certainty(self) -> None:
        """Logprob 0 with alternatives far below reads as p = 1: what collapse looks like."""
        tokens = split('{"findings":[{"verdict": <V>}]}', [("true", 0.0, {"false": -30.0})])
        signal = read_signal(completion(tokens), 1)
        assert signal.verdicts[0].p_true == pytest.approx(1.0)
        assert signal.report.stats is not None
        assert signal.report.stats.share_at_zero == 1.0

    def test_raw_top_logprobs_are_kept(self) -> None:
        """The verdict token's raw alternatives land in the record for the audit."""
        tokens = split('{"findings":[{"verdict": <V>}]}', [("true", LP_T, {"false": LP_F})])
        recorded = read_signal(completion(tokens), 1).verdicts[0].tokens[0]
        assert recorded.token == "true"
        assert {t.token: t.logprob for t in recorded.top} == {"true": LP_T, "false": LP_F}

    def test_several_findings_in_order(self) -> None:
        """Each finding gets the probability of its own verdict token."""
        text = '{"findings":[{"verdict": <V>}, {"verdict": <W>}]}'
        head, rest = text.split("<V>")
        middle, tail = rest.split("<W>")
        tokens = [
            (head, 0.0, {}),
            ("true", math.log(0.9), {"false": math.log(0.1)}),
            (middle, 0.0, {}),
            ("false", math.log(0.7), {"true": math.log(0.3)}),
            (tail, 0.0, {}),
        ]
        verdicts = read_signal(completion(tokens), 2).verdicts
        assert [round(v.p_true or -1, 3) for v in verdicts] == [0.9, 0.3]


class TestNoSignal:
    def test_no_logprobs_is_said_plainly(self) -> None:
        """A provider without logprobs gives no probability and a note saying why."""
        signal = read_signal(completion(None, content='{"findings":[{"verdict": true}]}'), 1)
        assert not signal.report.available
        assert "no logprobs" in (signal.report.note or "")
        assert signal.verdicts[0].p_true is None

    def test_tokens_that_do_not_spell_the_content(self) -> None:
        """Logprobs for some other text cannot be placed on this content."""
        tokens = [("something else", 0.0, {})]
        signal = read_signal(completion(tokens, content='{"findings":[]}'), 0)
        assert not signal.report.available
        assert "do not spell" in (signal.report.note or "")


class TestVerdictPositions:
    def test_verdict_text_inside_a_quote_is_not_a_verdict(self) -> None:
        """A quote that contains `"verdict": true` does not fool the scanner."""
        doc = {"findings": [{"quotes": ['he wrote "verdict": true'], "verdict": False}]}
        text = json.dumps(doc)
        positions = verdict_positions(text)
        assert [text[p : p + 5] for p in positions] == ["false"]

    def test_markdown_fenced_json(self) -> None:
        """JSON in a ```json fence is still scanned at the right offsets."""
        text = '```json\n{"findings": [{"verdict": true}]}\n```'
        assert [text[p : p + 4] for p in verdict_positions(text)] == ["true"]
