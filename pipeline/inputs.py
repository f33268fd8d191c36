"""The one input edge: a raw line or a task payload becomes a ContentItem or a named problem.

The CLI (`read_items`), `quoteguard submit` (the same reader) and the workers
(`parse_payload`, on what the broker delivered) all go through `item_from_record`, so an item
is judged the same way wherever it enters. Nothing a producer sends raises past this module:
invalid UTF-8, a BOM, malformed or truncated JSON, nesting of any depth, lone surrogates, ids
of the wrong type. Each problem names the line or the item and says what is wrong; problems
become error Decisions downstream, so N lines in always give N records out.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pipeline.models import ContentItem

#: Nesting a record may have (objects and arrays, the record itself included). Deeper JSON
#: overflows Python's recursion in the JSON codecs, pydantic and the log renderer.
MAX_DEPTH = 64
#: Characters an id may have: it becomes part of Redis keys, log lines and file names.
MAX_ID_CHARS = 1_000
#: Characters of an unreadable payload kept in its stand-in item for the reviewer.
RAW_PAYLOAD_CHARS = 10_000

_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


@dataclass(frozen=True)
class InputProblem:
    """An input that never became an item; `item_id` is always safe to store and log."""

    line: int | None
    item_id: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line} (item {self.item_id})" if self.line else f"item {self.item_id}"
        return f"{where}: {self.message}"


def read_items(path: Path) -> Iterator[ContentItem | InputProblem]:
    with path.open("rb") as handle:
        yield from parse_lines(handle, source=path.name)


def parse_lines(
    lines: Iterable[bytes], source: str = "input"
) -> Iterator[ContentItem | InputProblem]:
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        parsed = parse_line(raw, number, source)
        if isinstance(parsed, ContentItem):
            if parsed.id in seen:
                yield InputProblem(
                    number,
                    f"{source}:{number}",
                    f"duplicate id {parsed.id!r} (first on line {seen[parsed.id]}); skipped",
                )
                continue
            seen[parsed.id] = number
        yield parsed


def parse_line(raw: bytes, number: int, source: str) -> ContentItem | InputProblem:
    """One JSONL line; problems are named `source:number` unless the line's id is usable."""
    anonymous = f"{source}:{number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputProblem(number, anonymous, f"invalid UTF-8 at byte {exc.start}")
    # A BOM (files saved by Windows editors) is no content; a newline left inside a
    # truncated string would be reported as a "control character" rather than the cut.
    text = text.removeprefix("\ufeff").rstrip("\r\n")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return InputProblem(number, anonymous, f"malformed JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return InputProblem(number, anonymous, f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        return InputProblem(number, anonymous, f"malformed JSON: {exc}")
    return _located(item_from_record(record, anonymous), number)


def parse_payload(payload: object) -> ContentItem | InputProblem:
    """A task's item as the broker delivered it (already JSON-decoded, any shape)."""
    return item_from_record(payload, stand_in_id(payload))


def item_from_record(record: object, anonymous: str) -> ContentItem | InputProblem:
    """The item a decoded JSON record describes, or the problem with it.

    `anonymous` names the problem when the record has no usable id of its own.
    """
    if not isinstance(record, dict):
        return InputProblem(None, anonymous, "an item must be a JSON object with id and text")
    item_id, id_problem = _read_id(record.get("id"))
    if id_problem is not None:
        return InputProblem(None, anonymous, id_problem)
    if nesting_exceeds(record, MAX_DEPTH):
        return InputProblem(None, item_id, f"nested deeper than {MAX_DEPTH} levels")
    known = {k: v for k, v in record.items() if k in ("id", "text", "meta")}
    known["id"] = item_id
    problem = _unencodable(known)
    if problem is not None:
        return InputProblem(None, item_id, problem)
    try:
        return ContentItem.model_validate(known)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "item"
        return InputProblem(None, item_id, f"{where}: {first['msg']}")


def stand_in_id(payload: object) -> str:
    """A stable id for a payload with no usable one: a redelivery gets the same id."""
    digest = hashlib.sha256(safe_dump(payload).encode("ascii")).hexdigest()
    return f"invalid-{digest[:16]}"


def safe_dump(value: object) -> str:
    """ASCII JSON of any decoded value, for hashing and for a reviewer; never raises."""
    try:
        return json.dumps(value, ensure_ascii=True, default=repr, sort_keys=False)
    except (RecursionError, ValueError, TypeError):
        # Too deep to encode (or a cycle): say so; the shape is the problem anyway.
        return f"<a value nested too deep to show: {type(value).__name__}>"


def nesting_exceeds(value: object, limit: int) -> bool:
    """Whether objects/arrays nest deeper than `limit`; iterative, so any depth is fine."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[object, object] | list[object], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        for child in container.values() if isinstance(container, dict) else container:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


def _read_id(value: object) -> tuple[str, str | None]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # many exports use numeric ids
    if value is None:
        return "", "missing id: each item needs a non-empty string id"
    if not isinstance(value, str):
        kind = _JSON_TYPES.get(type(value), "a number")
        return "", f"id must be a string or an integer, not {kind}"
    if not value:
        return "", "missing id: each item needs a non-empty string id"
    if len(value) > MAX_ID_CHARS:
        return "", f"id has {len(value):,} characters, more than {MAX_ID_CHARS:,}"
    at = _surrogate_at(value)
    if at is not None:
        return "", f"id has a lone surrogate at character {at}: not valid Unicode"
    return value, None


def unencodable(item: ContentItem) -> str | None:
    """What in an item built in code (not read here) no UTF-8 sink can store, or None."""
    return _unencodable({"id": item.id, "text": item.text, "meta": item.meta})


def _unencodable(record: dict[str, object]) -> str | None:
    """A value no JSON sink stores as it is: a lone surrogate (from a JSON \\ud800 escape),
    or NaN or an infinity (Python's JSON reads them; a Decision would write null)."""
    stack: list[tuple[str, object]] = list(record.items())
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where} is {value}: not a JSON number"
        if isinstance(value, str):
            at = _surrogate_at(value)
            if at is not None:
                return f"{where} has a lone surrogate at character {at}: not valid Unicode"
        elif isinstance(value, dict):
            for key, child in value.items():
                label = f"{where}.{key}" if _surrogate_at(str(key)) is None else f"{where} key"
                stack.append((label, child))
                stack.append((f"{where} key", str(key)))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", child) for i, child in enumerate(value))
    return None


def as_unicode(text: str) -> str:
    """`text` with any lone surrogate written as an escape, so every sink can store it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _surrogate_at(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _located(parsed: ContentItem | InputProblem, number: int) -> ContentItem | InputProblem:
    if isinstance(parsed, InputProblem):
        return InputProblem(number, parsed.item_id, parsed.message)
    return parsed
