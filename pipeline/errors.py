"""The project's exceptions, all rooted in one base.

    QuoteguardError
    ├── ConfigError              settings or a profile file cannot be used
    ├── PolicyError              a policy file is invalid (file, line, what is wrong)
    │   └── PolicyErrors         several of those at once (every problem of a load)
    ├── InputError               one input item cannot be moderated (names the item)
    └── LLMError                 the model call failed
        ├── LLMTransientError    429, 5xx, timeout, connection: worth retrying later
        ├── LLMRequestError      the provider refused the request (4xx other than 429)
        └── LLMRetriesExhausted  the model never produced valid output within the re-asks

Third-party errors are translated into these at the edge (`pipeline.llm`); nothing above
it imports the SDK's exceptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class QuoteguardError(Exception):
    """Base of every error this project raises on purpose."""

    #: A stable snake_case name that lands in `Decision.errors[].kind`.
    kind = "error"


class ConfigError(QuoteguardError):
    kind = "config_error"


@dataclass
class PolicyError(QuoteguardError):
    """A policy file that cannot be loaded; carries where and what."""

    path: Path | str
    line: int | None
    message: str
    kind = "policy_error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


@dataclass
class InputError(QuoteguardError):
    """One input item cannot be moderated; the rest of the batch goes on."""

    item: str
    message: str
    kind = "invalid_input"

    def __str__(self) -> str:
        return f"item {self.item}: {self.message}"


class LLMError(QuoteguardError):
    kind = "llm_error"
    #: HTTP calls the failed request cost (retries and re-asks included), for the Decision.
    calls: int = 0


@dataclass
class LLMTransientError(LLMError):
    """Rate limit, server error, timeout or connection failure: retry later."""

    message: str
    status_code: int | None = None
    retry_after: float | None = None
    kind = "llm_transient"

    def __str__(self) -> str:
        return self.message


@dataclass
class LLMRequestError(LLMError):
    """The provider refused the request itself (bad request, auth, unknown model)."""

    message: str
    status_code: int | None = None
    kind = "llm_request"

    def __str__(self) -> str:
        return self.message


@dataclass
class LLMRetriesExhausted(LLMError):
    """The model's output never validated against the schema within the re-asks."""

    attempts: int
    last_error: str
    last_completion: str | None = field(default=None, repr=False)
    kind = "llm_invalid_output"

    def __str__(self) -> str:
        return f"no valid output after {self.attempts} attempts: {self.last_error}"


@dataclass
class PolicyErrors(PolicyError):
    """Every problem found while loading policies, so a writer fixes them in one pass.

    `path`, `line` and `message` summarise; `errors` holds each problem with its own place.
    """

    errors: list[PolicyError] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"{self.path}: {self.message}", *(f"  {e}" for e in self.errors)])
