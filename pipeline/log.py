"""structlog set-up: one JSON event per stage, safe for hostile content and secrets.

JSON rendering escapes control characters, and with ensure_ascii also bidi overrides and
zero-width characters, so moderated text can never drive a terminal or forge a log line.
Keys that look like credentials are redacted before rendering, whatever logged them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from collections.abc import MutableMapping
from functools import partial
from typing import Any

import structlog

SECRET_KEY = re.compile(r"(api[_-]?key|authorization|secret|token|password)", re.IGNORECASE)
#: Token counts are numbers, not credentials: keys naming them stay visible.
NOT_SECRET = re.compile(r"^(prompt|completion|cached|total|n)_tokens$|_token_count$", re.IGNORECASE)
SECRET_VALUE = re.compile(r"\b(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+\S+)")


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        event[key] = _redact(key, value)
    return event


def _redact(key: str, value: Any) -> Any:
    if SECRET_KEY.search(key) and not NOT_SECRET.search(key):
        return "[redacted]"
    if isinstance(value, str):
        return SECRET_VALUE.sub("[redacted]", value)
    if isinstance(value, dict):
        return {k: _redact(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(key, v) for v in value]
    return value


def escape_controls(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Console rendering prints strings raw, so escape what a terminal would act on."""
    for key, value in list(event.items()):
        if isinstance(value, str):
            event[key] = printable(value)
    return event


def printable(text: str) -> str:
    """Control and format characters (C0/C1, bidi overrides, zero-width) as \\uXXXX."""
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in ("Cc", "Cf") and c != " " else c
        for c in text
    )


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    # Resolved per logger, not once: test capture and CLI redirection swap sys.stderr.
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    renderers: list[structlog.types.Processor]
    if fmt == "json":
        renderers = [structlog.processors.JSONRenderer(partial(json.dumps, ensure_ascii=True))]
    else:
        renderers = [escape_controls, structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # Exceptions are rendered to text first so their text is redacted too.
            structlog.processors.format_exc_info,
            redact_secrets,
            *renderers,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
