"""The request body the simulator accepts and the error bodies it returns, as OpenAI does.

Parameters the simulator has no use for (top_p, stop, user, tools...) are accepted and
ignored, as a provider ignores what does not apply; the ones it uses are validated with
OpenAI's status codes and error shape, so the SDK raises the same exceptions it would.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.sim.reader import message_text

ErrorType = Literal["invalid_request_error", "server_error", "requests", "not_found_error"]


class SimError(Exception):
    """An error answer: status, OpenAI error body fields, extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: ErrorType = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=128)
    # OpenAI's default: a request that says nothing samples at temperature 1.
    temperature: float = Field(default=1.0, ge=0, le=2)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    stream: bool = False

    @field_validator("temperature", mode="before")
    @classmethod
    def _none_is_default(cls, value: object) -> object:
        return 1.0 if value is None else value

    @field_validator("response_format")
    @classmethod
    def _known_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        kind = value.get("type")
        if kind not in {"text", "json_object", "json_schema"}:
            msg = f"Invalid value for response_format.type: {kind!r}"
            raise ValueError(msg)
        spec = value.get("json_schema")
        if kind == "json_schema" and not (isinstance(spec, dict) and spec.get("name")):
            msg = "response_format.json_schema must be an object with a 'name'"
            raise ValueError(msg)
        return value

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def parse_request(body: object) -> ChatRequest:
    """The validated request, or a 400 SimError naming the offending parameter."""
    if not isinstance(body, dict):
        raise SimError(400, "The request body must be a JSON object.")
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise SimError(400, f"Invalid parameter {param}: {first['msg']}", param=param) from exc
    if request.top_logprobs is not None and request.top_logprobs > 0 and not request.logprobs:
        raise SimError(
            400, "logprobs must be set to true if top_logprobs is used", param="top_logprobs"
        )
    if request.stream:
        raise SimError(400, "The simulator does not stream; send stream=false.", param="stream")
    for i, message in enumerate(request.messages):
        if message.get("role") not in {"system", "developer", "user", "assistant", "tool"}:
            raise SimError(
                400, f"Invalid role in messages[{i}]: {message.get('role')!r}", param="messages"
            )
        try:
            # JSON may carry lone surrogates (\ud800) that no UTF-8 text can; refuse them here
            # rather than fail while writing the answer.
            message_text(message).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SimError(
                400, f"messages[{i}] is not valid Unicode text.", param="messages"
            ) from exc
    return request
