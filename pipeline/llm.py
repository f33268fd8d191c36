"""The one place that talks to the model: client factory, the structured call, error mapping.

Any OpenAI-compatible endpoint (OpenAI, Azure's v1 endpoint, vLLM, Ollama, llama.cpp server,
the bundled simulator) goes through the `openai` SDK, in an `instructor` mode that puts the
JSON in the message content: providers return no logprobs for tool-call arguments.

Two retry layers, never mixed:
- transport: the SDK's own retries on 429/5xx/timeouts/connection errors, with backoff that
  honours Retry-After (`max_transport_retries`);
- validation: a re-ask with the validation error (instructor's JSON-mode message) when the
  JSON does not fit the schema (`max_reasks`).
instructor shapes the request for the mode (schema in `response_format`, or in the system
message for JSON mode), once per policy set; the request goes out through the SDK's `post`.
Everything the SDK raises is translated here into `pipeline.errors`.

Nothing else talks to the model: `LLMClient.moderate` is the main call, `LLMClient.sample`
the extra n-choice call of the fallback; `usage_of` is the one place a completion and the
HTTP calls counted for it become a `Usage`; `pipeline.budget` is the one place the
retry settings become a worst case of calls per item (the workers' visibility check uses it).
"""

from __future__ import annotations

import contextvars
import copy
import functools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import instructor
import openai
from instructor.processing.response import handle_response_model
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from pydantic import ValidationError

from pipeline.budget import call_budget
from pipeline.config import Settings
from pipeline.errors import (
    LLMError,
    LLMRequestError,
    LLMRetriesExhausted,
    LLMTransientError,
)
from pipeline.models import Usage
from pipeline.schema import ModerationResult

#: Rough characters per token, to charge a shared token budget before the answer exists.
CHARS_PER_TOKEN = 4

#: instructor's JSON-mode re-ask, so a re-asked model reads what it would read through it.
REASK_PROMPT = "Correct your JSON ONLY RESPONSE, based on the following errors:"

MODES: dict[str, instructor.Mode] = {
    "json_schema": instructor.Mode.JSON_SCHEMA,
    "json": instructor.Mode.JSON,
}


class RateGate(Protocol):
    """Blocks until a request may go (a shared rate limit); returns the seconds waited."""

    def acquire(self, model: str, tokens: int) -> float: ...


@dataclass
class CallStats:
    """What the HTTP layer saw during one structured call (re-asks and retries included)."""

    calls: int = 0
    statuses: list[int] = field(default_factory=list)
    rate_wait_s: float = 0.0
    #: The rate gate's refusal, if it refused: the SDK's retries of it are refused at once.
    gate_refusal: LLMError | None = None


_current_stats: contextvars.ContextVar[CallStats | None] = contextvars.ContextVar(
    "quoteguard_call_stats", default=None
)


@contextmanager
def _tracking() -> Iterator[CallStats]:
    stats = CallStats()
    token = _current_stats.set(stats)
    try:
        yield stats
    finally:
        _current_stats.reset(token)


def usage_of(completion: ChatCompletion | None, calls: int, *, sample: bool = False) -> Usage:
    """The tokens of a completion (none if there is none) and the HTTP calls made for it."""
    u = completion.usage if completion is not None else None
    details = u.prompt_tokens_details if u is not None else None
    return Usage(
        prompt_tokens=u.prompt_tokens if u is not None else 0,
        completion_tokens=u.completion_tokens if u is not None else 0,
        cached_tokens=(details.cached_tokens or 0) if details is not None else 0,
        calls=calls,
        sample_calls=calls if sample else 0,
    )


@dataclass(frozen=True)
class LLMAnswer:
    result: ModerationResult
    completion: ChatCompletion
    stats: CallStats

    @property
    def usage(self) -> Usage:
        return usage_of(self.completion, self.stats.calls)


@dataclass(frozen=True)
class Samples:
    """What one n-choice request returned: the choices that parsed, or the error instead.

    Choices cut short (finish_reason=length) or whose JSON does not fit the schema are left
    out: they say nothing about the verdict.
    """

    requested: int
    results: list[ModerationResult]
    usage: Usage
    error: LLMError | None = None


class LLMClient:
    """A configured structured-output client for one model on one endpoint."""

    def __init__(
        self,
        settings: Settings,
        rate_gate: RateGate | None = None,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (a proxy, or httpx2.MockTransport in tests)."""
        self.settings = settings
        self.rate_gate = rate_gate
        http_client = httpx2.Client(
            transport=transport,
            timeout=settings.timeout_s,
            event_hooks={"request": [self._before_request], "response": [self._after_response]},
        )
        self.openai = openai.OpenAI(
            base_url=settings.base_url,
            # The SDK insists on a key; local servers (vLLM, Ollama, the simulator) ignore it.
            api_key=settings.api_key.get_secret_value() if settings.api_key else "unset",
            timeout=settings.timeout_s,
            max_retries=settings.max_transport_retries,
            http_client=http_client,
        )

    def close(self) -> None:
        self.openai.close()

    # -- HTTP hooks: every request, including SDK retries and re-asks, passes here ----------

    def _before_request(self, request: httpx2.Request) -> None:
        stats = _current_stats.get()
        if self.rate_gate is not None:
            # The SDK takes an error raised here for a connection failure and retries it
            # (after its own backoff): once the gate has refused, refuse those retries
            # without asking the gate again. A copy each time: re-raising one object would
            # grow its traceback with every retry.
            if stats is not None and stats.gate_refusal is not None:
                raise copy.copy(stats.gate_refusal)
            tokens = len(request.content) // CHARS_PER_TOKEN + self.settings.max_output_tokens
            try:
                waited = self.rate_gate.acquire(self.settings.model, tokens)
            except LLMError as refusal:
                if stats is not None:
                    stats.gate_refusal = refusal
                raise
            if stats is not None:
                stats.rate_wait_s += waited
        if stats is not None:
            stats.calls += 1

    def _after_response(self, response: httpx2.Response) -> None:
        stats = _current_stats.get()
        if stats is not None:
            stats.statuses.append(response.status_code)

    # -- the structured call ---------------------------------------------------------------

    def request_kwargs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "model": s.model,
            "temperature": s.temperature,
            "max_tokens": s.max_output_tokens,
            "logprobs": True,
            "top_logprobs": s.top_logprobs,
        }

    def moderate(self, messages: list[ChatCompletionMessageParam]) -> LLMAnswer:
        """One structured moderation call; raises only `pipeline.errors.LLMError`s.

        An answer whose JSON does not fit the schema is re-asked with the validation error
        (instructor's JSON-mode re-ask message); a truncated one (finish_reason=length) is
        asked again as it was, since one more try usually completes. Both spend the same
        budget of answers, `call_budget(settings).answers`, so it stays the worst case.
        """
        budget = call_budget(self.settings).answers
        request = self.request(messages, **self.request_kwargs())
        last_error, last_content = "no answer", None
        with _tracking() as stats:
            for _ in range(budget):
                try:
                    completion = self._complete(request)
                except Exception as exc:
                    raise translate_error(exc, calls=stats.calls) from exc
                choice = completion.choices[0] if completion.choices else None
                last_content = choice.message.content if choice is not None else None
                if choice is not None and choice.finish_reason == "length":
                    last_error = "output truncated at the token limit"
                    continue
                try:
                    result = parse_result(last_content)
                except ValidationError as exc:
                    last_error = _first_line(str(exc))
                    request = _reask(request, last_content, exc)
                    continue
                return LLMAnswer(result=result, completion=completion, stats=stats)
            raise _counted(
                LLMRetriesExhausted(
                    attempts=budget, last_error=last_error, last_completion=last_content
                ),
                stats.calls,
            )

    def sample(
        self, messages: list[ChatCompletionMessageParam], n: int, temperature: float
    ) -> Samples:
        """One request for `n` choices at `temperature`; never raises for provider failures.

        The same request shape as the main call (same schema, same system prompt, so the
        provider's prompt cache still applies); only the sampling differs. Logprobs are not
        asked for: agreement does not use them.
        """
        kwargs = {**self.request_kwargs(), "n": n, "temperature": temperature, "logprobs": False}
        kwargs.pop("top_logprobs", None)
        with _tracking() as stats:
            try:
                completion = self._complete(self.request(messages, **kwargs))
            except Exception as exc:  # noqa: BLE001 - an optional call: the caller goes on
                error = translate_error(exc, calls=stats.calls)
                return Samples(n, [], usage_of(None, stats.calls, sample=True), error)
        results = [
            parsed
            for choice in completion.choices
            if choice.finish_reason != "length"  # cut short: its JSON is incomplete
            and (parsed := parse_choice(choice.message.content)) is not None
        ]
        return Samples(n, results, usage_of(completion, stats.calls, sample=True))

    def request(self, messages: list[ChatCompletionMessageParam], **kwargs: Any) -> dict[str, Any]:
        """The request body instructor would send for our schema in the configured mode.

        instructor shapes only the system message (JSON mode appends the schema to it) and
        adds `response_format`; both depend on the system message alone, so they are built
        once per policy set (`_shape`) instead of once per item.
        """
        first = messages[0] if messages else None
        if first is None or first["role"] != "system" or not isinstance(first["content"], str):
            _, shaped = handle_response_model(
                ModerationResult, mode=MODES[self.settings.output_mode], messages=messages, **kwargs
            )
            return shaped
        system, extra = _shape(self.settings.output_mode, first["content"])
        return {**kwargs, **extra, "messages": [system, *messages[1:]]}

    def _complete(self, request: dict[str, Any]) -> ChatCompletion:
        """POST through the SDK (its transport retries and errors), then parse the body.

        The SDK's typed `create` re-walks the whole request (with its 30 KB system message)
        to transform it and builds the response object field by field; validating the JSON
        in one pass costs a fraction of that. A body that does not validate (a provider's
        own shape) falls back to the SDK's lenient construction.
        """
        response = self.openai.post("/chat/completions", body=request, cast_to=httpx2.Response)
        try:
            return ChatCompletion.model_validate_json(response.content)
        except ValidationError:
            return ChatCompletion.construct(**json.loads(response.content))


@functools.lru_cache(maxsize=16)
def _shape(mode: str, system: str) -> tuple[ChatCompletionMessageParam, dict[str, Any]]:
    """instructor's system message and extra request fields (`response_format`) for a mode."""
    _, shaped = handle_response_model(
        ModerationResult, mode=MODES[mode], messages=[{"role": "system", "content": system}]
    )
    messages = shaped.pop("messages")
    return messages[0], shaped


def _reask(request: dict[str, Any], content: str | None, error: ValidationError) -> dict[str, Any]:
    """The request again, with the answer and its validation error for the model to read."""
    return {
        **request,
        "messages": [
            *request["messages"],
            {"role": "assistant", "content": content or ""},
            {
                "role": "user",
                "content": f"{REASK_PROMPT}\n{error}",
            },
        ],
    }


def parse_result(content: str | None) -> ModerationResult:
    """The answer's JSON as the schema; raises ValidationError (its text goes to the re-ask).

    JSON mode may wrap it in prose or a fence, so the outermost braces are tried when the
    whole text does not parse.
    """
    text = content or ""
    try:
        return ModerationResult.model_validate_json(text)
    except ValidationError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end and (start, end) != (0, len(text) - 1):
            return ModerationResult.model_validate_json(text[start : end + 1])
        raise


def parse_choice(content: str | None) -> ModerationResult | None:
    """A sampled choice as the schema, or None when it does not fit."""
    try:
        return parse_result(content)
    except ValidationError:
        return None


def _counted(error: LLMError, calls: int) -> LLMError:
    error.calls = calls
    return error


def translate_error(exc: BaseException, *, calls: int = 0) -> LLMError:
    """Map SDK exceptions onto the project's transient/request/invalid errors.

    Our own error raised inside the SDK (the rate gate, from the request hook) arrives
    wrapped as a connection error; it is returned as it was, Retry-After included. Either
    way it carries `calls`, so an error Decision still counts the calls it cost.
    """
    return _counted(_own_error(exc) or _sdk_error(exc, calls), calls)


def _sdk_error(exc: BaseException, calls: int) -> LLMError:
    cause = exc
    if isinstance(cause, openai.APITimeoutError):
        return LLMTransientError(f"timed out after {calls} call(s)")
    if isinstance(cause, openai.APIConnectionError):
        return LLMTransientError(f"could not connect: {cause.__class__.__name__}")
    if isinstance(cause, openai.APIStatusError):
        status = cause.status_code
        if status == 429 or status >= 500:
            return LLMTransientError(
                f"provider answered {status} after {calls} call(s)",
                status_code=status,
                retry_after=_retry_after(cause.response.headers),
            )
        # The provider's reason says what to fix (a wrong key, an unknown model); logs and
        # Decisions redact and escape it like any other text.
        return LLMRequestError(
            f"provider refused the request: {status}: {_provider_reason(cause)}",
            status_code=status,
        )
    # Anything else (a body that is not JSON at all, say) is an answer we could not use.
    return LLMRetriesExhausted(attempts=calls, last_error=_first_line(f"{exc!r}"))


def _provider_reason(error: openai.APIStatusError) -> str:
    """The error body's message (OpenAI's shape), else the first line of the body."""
    body = error.body
    inner = body.get("error", body) if isinstance(body, dict) else None
    message = inner.get("message") if isinstance(inner, dict) else None
    if isinstance(message, str) and message.strip():
        return _first_line(message)
    return _first_line(error.response.text) or "no reason given"


def _own_error(exc: BaseException) -> LLMError | None:
    """Our error in the explicit cause chain (`raise ... from`), as a fresh copy: the caller
    raises it `from exc`, and raising the original would make the chain a cycle."""
    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        if isinstance(link, LLMError):
            return copy.copy(link)
        seen.add(id(link))
        link = link.__cause__
    return None


def _retry_after(headers: httpx2.Headers) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return float(value) * scale
            except ValueError:
                continue
    return None


def _first_line(text: str, limit: int = 300) -> str:
    return text.strip().splitlines()[0][:limit] if text.strip() else text


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
