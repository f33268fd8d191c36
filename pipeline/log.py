"""structlog set-up: one JSON event per stage, safe for hostile content and secrets.

Every log line takes one path, whoever logged it: structlog events from this project, and
stdlib `logging` records from instructor, openai, httpx, Celery and kombu (routed through
structlog's `ProcessorFormatter` on the root logger). On that path, values that look like
credentials, and the configured secrets themselves wherever they appear (a provider's error
body may echo the Authorization header), are redacted; then the JSON renderer escapes
control characters, and with ensure_ascii also bidi overrides and zero-width characters, so
moderated text can never drive a terminal or forge a log line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import unicodedata
from collections.abc import Iterable, MutableMapping
from functools import partial
from typing import Any, TextIO

import structlog
from pydantic import SecretStr

SECRET_KEY = re.compile(r"(api[_-]?key|authorization|secret|token|password)", re.IGNORECASE)
#: Token counts are numbers, not credentials: keys naming them stay visible.
NOT_SECRET = re.compile(r"^(prompt|completion|cached|total|n)_tokens$|_token_count$", re.IGNORECASE)
SECRET_VALUE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[^\s\"',;}\]]+)")
#: A credential written out inside a message: `Authorization: Basic x`, `"api_key": "x"`.
SECRET_ASSIGNMENT = re.compile(
    r"""((?:authorization|api[_-]?key|access[_-]?token|password|secret)["']?\s*[:=]\s*["']?)"""
    r"""(?!\[redacted\])(?:(?:bearer|basic|token)\s+)?[^\s"',;}\]]+""",
    re.IGNORECASE,
)
#: A password in a URL (`https://user:pass@host`, `redis://:pass@host`): the userinfo goes.
URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)[^\s/@\"'<>]*@", re.IGNORECASE)
#: A credential in a URL's query: `?key=...` (Google), `&sig=...` (signed URLs), `&token=...`.
QUERY_SECRET = re.compile(
    r"([?&](?:key|token|sig|signature|code|auth|access_token|client_secret)=)[^&\s\"'#]+",
    re.IGNORECASE,
)
#: Configured secrets shorter than this are not searched for in text: "sim" would redact
#: every "sim-calibrated". Real API keys are far longer.
MIN_SECRET_CHARS = 8

#: The HTTP clients log every request at INFO (and each socket step at DEBUG): one line per
#: model call is noise beside our one event per stage, which says what happened to each item.
CHATTY_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2")

REDACTED = "[redacted]"
_known_secrets: tuple[str, ...] = ()


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _redact(key, value)
    return event


def _redact(key: str, value: Any) -> Any:
    if SECRET_KEY.search(key) and not NOT_SECRET.search(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_text(str(k)): _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(key, v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    # An exception, bytes, any object: redacted as the renderers would show it (repr).
    return redact_text(repr(value))


def redact_text(text: str) -> str:
    """`text` with configured secrets and credential-shaped values replaced."""
    text = SECRET_VALUE.sub(REDACTED, text)
    text = SECRET_ASSIGNMENT.sub(rf"\1{REDACTED}", text)
    text = URL_USERINFO.sub(rf"\1{REDACTED}@", text)
    text = QUERY_SECRET.sub(rf"\1{REDACTED}", text)
    for secret in _known_secrets:
        text = text.replace(secret, REDACTED)
    return text


def escape_controls(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console rendering prints strings raw, so escape what a terminal would act on."""
    return {
        printable(key) if isinstance(key, str) else key: (
            printable(value) if isinstance(value, str) else value
        )
        for key, value in event.items()
    }


def printable(text: str) -> str:
    """Control and format characters (C0/C1, bidi overrides, zero-width) as \\uXXXX."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf", "Cs") and c != " " else c
        for c in text
    )


#: One lock for both paths: a structlog event and a library's line written by two threads
#: at once must not interleave into one unparseable (or forged) line.
_WRITE_LOCK = threading.RLock()


class _StderrLogger:
    """structlog's logger: one whole line at a time to whatever sys.stderr is now (test
    capture and CLI redirection swap it)."""

    def msg(self, message: str) -> None:
        with _WRITE_LOCK:
            sys.stderr.write(message + "\n")
            sys.stderr.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _StderrLogger()


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time, under the structlog side's lock."""

    def createLock(self) -> None:  # noqa: N802 - stdlib's name
        self.lock = _WRITE_LOCK

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass  # fixed to sys.stderr

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - stdlib's name
        # The stdlib prints the record's message and arguments raw: they may hold a secret.
        line = {"event": "log_record_unformattable", "logger": record.name, "level": "error"}
        sys.stderr.write(json.dumps(line) + "\n")


def configure_logging(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[SecretStr | str | None] = (),
) -> None:
    """Configure structlog and route stdlib logging through the same processors.

    `secrets` (API keys, webhook secrets) are redacted wherever they appear in a line.
    """
    global _known_secrets  # noqa: PLW0603 - one logging configuration per process
    values = (s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets)
    _known_secrets = tuple(sorted({v for v in values if v and len(v) >= MIN_SECRET_CHARS}))
    renderers: list[structlog.types.Processor]
    if fmt == "json":
        renderers = [structlog.processors.JSONRenderer(partial(json.dumps, ensure_ascii=True))]
    else:
        renderers = [escape_controls, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    # Exceptions are rendered to text before redaction so their text is redacted too.
    safe: list[structlog.types.Processor] = [
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *safe,
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    _route_stdlib(level, [*safe, *renderers])


def _route_stdlib(level: str, processors: list[structlog.types.Processor]) -> None:
    """Every stdlib record (instructor, openai, httpx, Celery, kombu) as a structlog event."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *processors],
    )
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replace, not add: a second configuration (tests, a CLI command calling another) must
    # not print each line twice. (Celery adds none: workers.lifecycle takes its set-up.)
    for old in root.handlers[:]:
        if isinstance(old, _StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.getLevelName(level.upper()))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
