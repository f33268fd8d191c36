"""Reads items from JSONL without letting one bad line stop the rest.

Each line yields either a `ContentItem` or an `InputProblem` that names the line (and the
item id when it could be read) and says what is wrong: invalid UTF-8, malformed JSON, a
missing or non-string id, a duplicate id. Problems become error Decisions downstream, so
N lines in always give N records out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from pipeline.models import ContentItem


@dataclass(frozen=True)
class InputProblem:
    line: int
    item_id: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line} (item {self.item_id}): {self.message}"


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
        parsed = _parse_line(raw, number, source)
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


def _parse_line(raw: bytes, number: int, source: str) -> ContentItem | InputProblem:
    anonymous = f"{source}:{number}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return InputProblem(number, anonymous, f"invalid UTF-8 at byte {exc.start}")
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return InputProblem(number, anonymous, f"malformed JSON: {exc.msg} at column {exc.colno}")
    if not isinstance(record, dict):
        return InputProblem(number, anonymous, "a line must be a JSON object with id and text")
    item_id = record.get("id")
    if isinstance(item_id, int) and not isinstance(item_id, bool):
        record["id"] = item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id:
        return InputProblem(number, anonymous, "missing id: each line needs a non-empty string id")
    known = {k: v for k, v in record.items() if k in ("id", "text", "meta")}
    try:
        return ContentItem.model_validate(known)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "line"
        return InputProblem(number, item_id, f"{where}: {first['msg']}")
