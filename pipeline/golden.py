"""Golden sets: labelled items for evaluation and calibration, one JSON object per line.

    {"id": "g-1", "text": "...", "meta": {...},
     "label": {"violation": true, "rule_ids": ["HARASSMENT.2"], "quotes": ["..."]}}

`meta` and `label.quotes` are optional. A label must be consistent: a violation names at
least one rule, a non-violation names none, and every gold quote occurs in the text as
written. Unlike moderation input (where one bad line must not stop the rest), a golden set
is loaded whole or not at all: metrics over a silently shortened set would be wrong without
anyone knowing. Every problem is reported at once, each with its line.

`golden_hash` is the SHA-256 of the file's bytes: a profile records it, so a profile can be
traced to the exact labels it was fitted on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import Field, JsonValue, ValidationError, model_validator

from pipeline.errors import ConfigError
from pipeline.models import ContentItem, Frozen

#: Problems listed in one error; a wholly wrong file would otherwise print thousands.
MAX_PROBLEMS = 20


class GoldLabel(Frozen):
    violation: bool
    rule_ids: list[str] = Field(default_factory=list)
    quotes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> GoldLabel:
        if self.violation and not self.rule_ids:
            raise ValueError("violation is true but rule_ids is empty: name the rule(s) broken")
        if not self.violation and self.rule_ids:
            raise ValueError("violation is false but rule_ids is not empty")
        if len(set(self.rule_ids)) != len(self.rule_ids):
            raise ValueError("rule_ids has duplicates")
        return self


class GoldenItem(Frozen):
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    meta: dict[str, JsonValue] = Field(default_factory=dict)
    label: GoldLabel

    @model_validator(mode="after")
    def _quotes_in_text(self) -> GoldenItem:
        for i, quote in enumerate(self.label.quotes):
            if quote not in self.text:
                raise ValueError(f"label.quotes[{i}] does not occur in text as written")
        return self

    def content(self) -> ContentItem:
        return ContentItem(id=self.id, text=self.text, meta=self.meta)


@dataclass
class GoldenError(ConfigError):
    """A golden file that cannot be used: every problem found, each with its line."""

    path: Path | str
    problems: list[tuple[int, str]] = field(default_factory=list)
    truncated: bool = False

    def __str__(self) -> str:
        lines = [f"{self.path}: invalid golden set"]
        lines += [f"  line {line}: {message}" for line, message in self.problems]
        if self.truncated:
            lines.append(f"  ... (only the first {MAX_PROBLEMS} problems are listed)")
        return "\n".join(lines)


@dataclass(frozen=True)
class GoldenSet:
    path: Path
    items: list[GoldenItem]
    golden_hash: str

    def __len__(self) -> int:
        return len(self.items)

    @property
    def rule_ids(self) -> set[str]:
        return {r for item in self.items for r in item.label.rule_ids}


def _problem(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


def load_golden(path: Path | str) -> GoldenSet:
    """Every item of a golden JSONL file, or a GoldenError listing what is wrong."""
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read golden set: {exc}") from exc
    items: list[GoldenItem] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        item = _parse(raw, problems, number)
        if item is None:
            continue
        if item.id in seen:
            problems.append((number, f"duplicate id {item.id!r} (first on line {seen[item.id]})"))
            continue
        seen[item.id] = number
        items.append(item)
    if not items and not problems:
        problems.append((0, "no items: the file is empty"))
    if problems:
        raise GoldenError(source, problems[:MAX_PROBLEMS], truncated=len(problems) > MAX_PROBLEMS)
    return GoldenSet(source, items, hashlib.sha256(data).hexdigest())


def _parse(raw: bytes, problems: list[tuple[int, str]], number: int) -> GoldenItem | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append((number, f"invalid UTF-8 at byte {exc.start}"))
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        problems.append((number, f"malformed JSON: {exc.msg} at column {exc.colno}"))
        return None
    if not isinstance(record, dict):
        problems.append((number, "a line must be a JSON object with id, text and label"))
        return None
    try:
        return GoldenItem.model_validate(record)
    except ValidationError as exc:
        problems.append((number, _problem(exc)))
        return None
