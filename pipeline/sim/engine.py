"""One chat completion, start to finish, without HTTP: read, judge, corrupt, write, count.

The server decides faults and waits; everything here is a function of the request, the
profile, the config and whether the system prompt was seen before, so it can be tested
without a socket.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.sim.classifier import Judgement, judge
from pipeline.sim.config import FaultKind, SimConfig
from pipeline.sim.faults import cut_point, malform
from pipeline.sim.hallucination import corrupt
from pipeline.sim.profiles import Profile
from pipeline.sim.reader import ReadPrompt, message_text, read
from pipeline.sim.responder import render, token_logprobs
from pipeline.sim.seeding import digest, rng_for
from pipeline.sim.tokenizer import count_tokens, tokenize
from pipeline.sim.wire import ChatRequest

#: Providers cache prompt prefixes in blocks of this many tokens.
CACHE_BLOCK = 128
#: Chat formatting tokens per message and for priming the reply (OpenAI's published count).
TOKENS_PER_MESSAGE = 3
REPLY_PRIMING = 3


class PromptCache:
    """Which system prompts the "provider" has seen, most recent last, bounded."""

    def __init__(self, capacity: int = 1024) -> None:
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def seen_before(self, system: str) -> bool:
        """Whether `system` was seen before; records it either way."""
        key = digest(system)
        with self._lock:
            hit = key in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        return hit

    def clear(self) -> None:
        with self._lock:
            self._seen.clear()


@dataclass(frozen=True)
class Answer:
    body: dict[str, Any]
    findings: list[list[Judgement]] = field(default_factory=list)  # per choice

    @property
    def corruptions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for choice in self.findings:
            for j in choice:
                if j.corruption:
                    counts[j.corruption] = counts.get(j.corruption, 0) + 1
        return counts


@dataclass(frozen=True)
class _Turn:
    """What every choice of one request shares."""

    request: ChatRequest
    profile: Profile
    config: SimConfig
    prompt: ReadPrompt
    seed: int
    fault: FaultKind | None

    def findings(self, sample: int) -> list[Judgement]:
        prompt, temperature = self.prompt, self.request.temperature
        found = judge(
            prompt.rules, prompt.content, seed=self.seed, sample=sample, temperature=temperature
        )
        if self.profile.hallucinating:
            found = corrupt(
                found, prompt.rules, prompt.content,
                rate=self.config.hallucination_rate, seed=self.seed, sample=sample,
            )  # fmt: skip
        return found

    def choice(self, index: int, found: Sequence[Judgement], key: object) -> dict[str, Any]:
        rendered = render(found)
        text, verdicts = rendered.content, rendered.verdicts
        if self.fault == "malformed":
            text, verdicts = malform(text, self.seed, key), {}
        tokens = tokenize(text)
        keep = cut_point(len(tokens), self.seed, key) if self.fault == "truncated" else len(tokens)
        if self.request.token_limit is not None:
            keep = min(keep, self.request.token_limit)
        finish = "length" if keep < len(tokens) else "stop"
        tokens = tokens[:keep]
        logprobs = None
        if self.request.logprobs:
            k = self.request.top_logprobs or 0
            rng = rng_for(self.seed, "logprobs", key)
            entries = token_logprobs(tokens, verdicts, self.profile, k, rng)
            logprobs = {"content": entries, "refusal": None}
        message = {"role": "assistant", "content": "".join(tokens), "refusal": None}
        return {
            "index": index,
            "message": {**message, "annotations": []},
            "logprobs": logprobs,
            "finish_reason": finish,
            "_tokens": len(tokens),  # popped by complete(): the choice's completion tokens
        }


def usage(
    request: ChatRequest, system: str, cached: bool, completion_tokens: int
) -> dict[str, Any]:
    prompt_tokens = REPLY_PRIMING + sum(
        TOKENS_PER_MESSAGE + count_tokens(message_text(m)) for m in request.messages
    )
    cached_tokens = count_tokens(system) // CACHE_BLOCK * CACHE_BLOCK if cached else 0
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def complete(
    request: ChatRequest,
    profile: Profile,
    config: SimConfig,
    *,
    request_id: str,
    cache: PromptCache,
    fault: FaultKind | None = None,
) -> Answer:
    """The completion body for a request that is answered (not failed) by the server."""
    prompt = read(request.messages)
    # The request's own `seed` varies the model's draws as OpenAI's does; the server's seed
    # varies the whole simulated model.
    seed = digest(config.seed, request.seed)
    cached = bool(prompt.system) and cache.seen_before(prompt.system)
    turn = _Turn(request, profile, config, prompt, seed, fault)
    choices: list[dict[str, Any]] = []
    findings: list[list[Judgement]] = []
    for index in range(request.n):
        # At temperature 0 every choice is the greedy one; above it, each is its own sample.
        sample = index if request.temperature > 0 else 0
        found = turn.findings(sample)
        choices.append(turn.choice(index, found, key=(prompt.content, sample)))
        findings.append(found)
    completion_tokens = sum(choice.pop("_tokens") for choice in choices)
    body = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": profile.served_model,
        "system_fingerprint": profile.fingerprint,
        "service_tier": "default",
        "choices": choices,
        "usage": usage(request, prompt.system, cached, completion_tokens),
    }
    return Answer(body, findings)
