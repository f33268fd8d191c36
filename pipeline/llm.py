"""The one place that talks to the model: client factory, the structured call, error mapping.

Any OpenAI-compatible endpoint (OpenAI, Azure's v1 endpoint, vLLM, Ollama, llama.cpp server,
the bundled simulator) goes through the `openai` SDK wrapped by `instructor`, in a mode that
puts the JSON in the message content: providers return no logprobs for tool-call arguments.

Two retry layers, never mixed:
- transport: the SDK's own retries on 429/5xx/timeouts/connection errors, with backoff that
  honours Retry-After (`max_transport_retries`);
- validation: instructor re-asks with the validation error when the JSON does not fit the
  schema (`max_reasks`).
Everything the SDK or instructor raises is translated here into `pipeline.errors`.
"""

from __future__ import annotations

import contextvars
import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx2
import instructor
import openai
from instructor.core.exceptions import IncompleteOutputException, InstructorRetryException
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from pipeline.config import Settings
from pipeline.errors import (
    LLMError,
    LLMRequestError,
    LLMRetriesExhausted,
    LLMTransientError,
)
from pipeline.schema import ModerationResult

#: Rough characters per token, to charge a shared token budget before the answer exists.
CHARS_PER_TOKEN = 4

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


@dataclass(frozen=True)
class LLMAnswer:
    result: ModerationResult
    completion: ChatCompletion
    stats: CallStats


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
        self.instructor = instructor.from_openai(self.openai, mode=MODES[settings.output_mode])

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
        """One structured moderation call; raises only `pipeline.errors.LLMError`s."""
        with _tracking() as stats:
            attempts = 0
            # Truncated output (finish_reason=length) is not re-asked by instructor; one
            # more try, within the same re-ask budget, usually completes.
            while True:
                attempts += 1
                try:
                    result, completion = self.instructor.chat.completions.create_with_completion(
                        response_model=ModerationResult,
                        messages=messages,
                        max_retries=self.settings.max_reasks + 1,
                        **self.request_kwargs(),
                    )
                except IncompleteOutputException as exc:
                    if attempts <= self.settings.max_reasks:
                        continue
                    raise LLMRetriesExhausted(
                        attempts=stats.calls,
                        last_error="output truncated at the token limit",
                        last_completion=_completion_text(exc.last_completion),
                    ) from exc
                except Exception as exc:
                    raise translate_error(exc, calls=stats.calls) from exc
                return LLMAnswer(result=result, completion=completion, stats=stats)


def translate_error(exc: BaseException, *, calls: int = 0) -> LLMError:
    """Map SDK/instructor exceptions onto the project's transient/request/invalid errors.

    Our own error raised inside the SDK (the rate gate, from the request hook) arrives
    wrapped as a connection error; it is returned as it was, Retry-After included.
    """
    return _own_error(exc) or _sdk_error(exc, calls)


def _sdk_error(exc: BaseException, calls: int) -> LLMError:
    cause: BaseException = exc
    if isinstance(exc, InstructorRetryException) and exc.__cause__ is not None:
        cause = exc.__cause__
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
        return LLMRequestError(f"provider refused the request: {status}", status_code=status)
    if isinstance(exc, InstructorRetryException):
        return LLMRetriesExhausted(
            attempts=exc.n_attempts,
            last_error=_first_line(str(exc)),
            last_completion=_completion_text(exc.last_completion),
        )
    return LLMRetriesExhausted(attempts=calls, last_error=_first_line(f"{exc!r}"))


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


def _completion_text(completion: object) -> str | None:
    if isinstance(completion, ChatCompletion) and completion.choices:
        return completion.choices[0].message.content
    return None


def elapsed_ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)
