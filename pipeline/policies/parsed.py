"""What a parser hands back for one file, whichever format it was written in."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.policies.diagnostics import Diagnostic
from pipeline.policies.model import Policy


@dataclass
class ParsedFile:
    """One policy file: the Policy (None when it has errors) and every problem found.

    `example_lines` (rule id, or `allowed`, -> example -> line) and `lines` let the checks
    that look across files (lint) point at the line an example or a reference is on.
    """

    path: Path
    policy: Policy | None
    lines: list[str]
    diagnostics: list[Diagnostic] = field(default_factory=list)
    example_lines: dict[str, dict[str, int]] = field(default_factory=dict)
    heading_lines: set[int] = field(default_factory=set)  # where rules are defined

    @property
    def ok(self) -> bool:
        return self.policy is not None and not any(d.level == "error" for d in self.diagnostics)


class Reporter:
    """A parser's list of diagnostics for one file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.diagnostics: list[Diagnostic] = []

    def error(self, code: str, line: int, message: str, col: int = 1) -> None:
        self.diagnostics.append(Diagnostic(self.path, line, col, code, message))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "error"]
