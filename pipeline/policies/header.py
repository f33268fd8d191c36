"""The front-matter header a policy file may start with, between two `---` lines.

    ---
    id: SPAM
    title: Spam
    format: prose
    ---

A prose-shaped policy needs one (its body has no `# Title` and its rule ids carry no policy
id); a Markdown policy may have one, and what it states must agree with the body.
`header.schema.json` beside this module is the JSON Schema of `Header`, for editors (the
YAML language server completes and checks the header with it); a test keeps the two equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.policies.diagnostics import Diagnostic, lines_of
from pipeline.policies.model import POLICY_ID

SCHEMA_PATH = Path(__file__).with_name("header.schema.json")
_FENCE = "---"

Format = Literal["markdown", "prose"]


class Header(BaseModel):
    """The fields a policy header may state; any other field is a mistake (PE501)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="quoteguard policy header",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    id: str | None = Field(
        default=None,
        pattern=rf"^{POLICY_ID}$",
        description="The policy id: upper-case words joined by _, e.g. SPAM or SELF_HARM.",
    )
    title: str | None = Field(
        default=None, min_length=1, description="The policy's name as people say it."
    )
    format: Format = Field(
        default="markdown",
        description="markdown: '# Title' and '## POLICY.1' rules; prose: tiers and rule lines.",
    )


def header_schema() -> dict[str, object]:
    """The JSON Schema of the header, as shipped in header.schema.json."""
    return Header.model_json_schema()


@dataclass
class Split:
    """A file cut into its header and its body; the body keeps its line numbers."""

    header: Header
    body: str
    header_lines: dict[str, int] = field(default_factory=dict)  # field -> line
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: False when the header is never closed: where the body starts is unknown, so what a
    #: parser said of it would be about the header's lines.
    closed: bool = True


def split_header(path: Path, source: str) -> Split:
    """The header (defaults when there is none) and the body, header lines blanked."""
    lines = lines_of(source)
    if not lines or lines[0].rstrip() != _FENCE:
        return Split(Header(), source)
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in (_FENCE, "...")), None)
    if end is None:
        problem = "the front-matter header opened on line 1 is never closed by a '---' line"
        diagnostics = [Diagnostic(path, 1, 1, "PE502", problem)]
        return Split(Header(), source, diagnostics=diagnostics, closed=False)
    # Blank lines in place of the header keep every line number of the body right.
    body = "\n" * (end + 1) + "\n".join(lines[end + 1 :])
    split = Split(Header(), body)
    split.header = _parse("\n".join(lines[1:end]), path, split)
    return split


def _parse(text: str, path: Path, split: Split) -> Header:
    def problem(code: str, line: int, col: int, message: str) -> Header:
        split.diagnostics.append(Diagnostic(path, line, col, code, message))
        return Header()

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # PyYAML's own text spans several lines and counts lines from the header's start;
        # the diagnostic is one line with the file's line and column.
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1  # +1 for 0-based, +1 for '---'
        col = mark.column + 1 if mark is not None else 1
        what = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        said = ", ".join(str(part) for part in what if part) or str(exc).splitlines()[0]
        return problem("PE502", line, col, f"the header is not valid YAML: {said}")
    if node is None:
        return Header()
    if not isinstance(node, yaml.MappingNode) or not isinstance(values, dict):
        return problem("PE502", 2, 1, "the header must be 'field: value' lines")
    known = set(Header.model_fields)
    for key, _value in node.value:
        line, col = key.start_mark.line + 2, key.start_mark.column + 1
        split.header_lines[str(key.value)] = line
        if key.value not in known:
            problem(
                "PE501",
                line,
                col,
                f"unknown header field '{key.value}'; a header may state "
                f"{', '.join(sorted(known))}",
            )
    try:
        return Header.model_validate({k: v for k, v in values.items() if k in known})
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            where = split.header_lines.get(name, 2)
            problem("PE502", where, 1, f"header field '{name}': {error['msg']}")
        return Header()


def write_schema() -> None:
    """Regenerate header.schema.json after changing `Header` (the test says when)."""
    SCHEMA_PATH.write_text(json.dumps(header_schema(), indent=2) + "\n", encoding="utf-8")
