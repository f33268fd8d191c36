"""Problems found in policy files, one line each, as ruff and mypy print theirs.

Every kind of problem has a stable code, so CI rules, editor integrations and the writers'
guide can name it. `PE` codes are errors (the set does not load); `PW` codes are warnings
(it loads, but a writer should look). Codes are never renumbered or reused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.errors import PolicyError, PolicyErrors

Level = Literal["error", "warning"]

#: Line ends as Markdown (markdown-it) and editors count them. Not `str.splitlines`, which
#: also breaks at form feeds, U+0085 and U+2028: one of those in an example shifted every
#: later line number, and a header split rejoined them as newlines.
_LINE_END = re.compile(r"\r\n|\r|\n")

#: code -> what kind of problem it is. The message of each diagnostic says the specifics.
CODES: dict[str, str] = {
    "PE000": "a policy the checks let through but the model refused (a gap in the checks)",
    "PE001": "the file cannot be read or is not UTF-8",
    "PE002": "no policy file at the path given",
    "PE101": "the policy title is missing, empty or given twice",
    "PE102": "the policy has no description",
    "PE103": "the policy has no rules",
    "PE104": "a heading or section the format does not use",
    "PE201": "a malformed rule id",
    "PE202": "a duplicate rule id",
    "PE203": "a rule id outside its policy's prefix, or a policy id used by two files",
    "PE204": "a rule with no title",
    "PE205": "a rule with no rule text",
    "PE301": "a rule with no severity",
    "PE302": "an unknown severity",
    "PE303": "a severity given twice",
    "PE401": "a rule with no violating example",
    "PE402": "an example that is not one list item of text",
    "PE403": "an example listed as violating and as not violating",
    "PE501": "an unknown front-matter header field",
    "PE502": "a front-matter header that is malformed or has an invalid value",
    "PE601": "a reference to a rule that does not exist",
    "PW401": "an example listed under two rules",
    "PW701": "a policy set longer than a model follows well",
    "PW801": "a control character, line separator or bidi override (Trojan Source)",
}


def lines_of(text: str) -> list[str]:
    """The lines of a file as diagnostics number them (like `splitlines`, no final '')."""
    lines = _LINE_END.split(text)
    return lines[:-1] if lines and not lines[-1] else lines


@dataclass(frozen=True)
class Diagnostic:
    """One problem: where (`path:line:col`), which kind (`code`) and what exactly."""

    path: Path | str
    line: int
    col: int
    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in CODES:  # a typo in a parser must not invent a code
            raise ValueError(f"unknown diagnostic code {self.code}")

    @property
    def level(self) -> Level:
        return "warning" if self.code.startswith("PW") else "error"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"

    def as_json(self) -> dict[str, str | int]:
        return {
            "path": str(self.path),
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "level": self.level,
            "message": self.message,
        }

    def as_error(self) -> PolicyError:
        return PolicyError(self.path, self.line, self.message)


def raise_errors(path: Path | str, diagnostics: list[Diagnostic]) -> None:
    """Raise the error-level diagnostics, in file order, as the loader always has."""
    errors = [d.as_error() for d in sorted(diagnostics, key=_where) if d.level == "error"]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PolicyErrors(path, None, f"{len(errors)} problems", errors)


def _where(diagnostic: Diagnostic) -> tuple[str, int, int]:
    return (str(diagnostic.path), diagnostic.line, diagnostic.col)
