"""What the model reads: the rules from the system message, the content from the fence.

The simulator gets no side channel to the policy files; it parses the prompt the client
sent, as a model would read it (format: `pipeline.prompt.render_policies`). The content is
found by the exact per-request markers, so a fake closing marker inside the content is
just more content.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from pipeline.prompt import CLOSE_MARKER, OPEN_MARKER

_RULE_HEADER = re.compile(r"^### Rule (?P<id>[^\s:]+): ?(?P<title>.*)$")
_ANY_HEADER = re.compile(r"^#{1,3} ")
_SEVERITY = re.compile(r"^Severity: ?(?P<severity>.*)$")
_SECTIONS = {"Violating examples:": "violating", "Non-violating examples:": "non_violating"}


def _marker_pattern(template: str) -> str:
    return re.escape(template).replace(re.escape("{nonce}"), r"(?P<nonce>[0-9A-Za-z_-]+)", 1)


_OPEN = re.compile(_marker_pattern(OPEN_MARKER))


@dataclass(frozen=True)
class RuleView:
    """One rule as read from the prompt."""

    id: str
    title: str
    severity: str = ""
    text: str = ""
    violating: tuple[str, ...] = ()
    non_violating: tuple[str, ...] = ()

    @property
    def policy(self) -> str:
        """The policy part of the id: `HARASSMENT` for `HARASSMENT.2`."""
        return self.id.rpartition(".")[0] or self.id


@dataclass
class _Draft:
    id: str
    title: str
    severity: str = ""
    text: list[str] = field(default_factory=list)
    violating: list[str] = field(default_factory=list)
    non_violating: list[str] = field(default_factory=list)

    def freeze(self) -> RuleView:
        return RuleView(
            self.id,
            self.title,
            self.severity,
            "\n".join(self.text).strip(),
            tuple(self.violating),
            tuple(self.non_violating),
        )


@dataclass(frozen=True)
class ReadPrompt:
    system: str
    rules: tuple[RuleView, ...]
    content: str
    fenced: bool  # False: no fence found, the whole last user message was taken as content


def message_text(message: Mapping[str, object]) -> str:
    """The text of a message whose content is a string or a list of text parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


@lru_cache(maxsize=16)
def parse_rules(system: str) -> tuple[RuleView, ...]:
    """Every `### Rule` block with its severity, text and example lists.

    Cached: the system message is the same for every item of a policy-set version.
    """
    drafts: list[_Draft] = []
    draft: _Draft | None = None
    section: list[str] | None = None
    for line in system.splitlines():
        if header := _RULE_HEADER.match(line):
            draft, section = _Draft(header["id"], header["title"].strip()), None
            drafts.append(draft)
        elif draft is None:
            continue
        elif _ANY_HEADER.match(line):
            draft, section = None, None
        elif line in _SECTIONS:
            section = getattr(draft, _SECTIONS[line])
        elif section is not None and line.startswith("- "):
            section.append(line[2:])
        elif section is not None and line.strip():
            # An example that itself spanned lines: the renderer wrote it after one "- ".
            if section:
                section[-1] += "\n" + line
        elif section is not None:
            # A blank line ends the lists (instructor's JSON mode appends its text after one).
            draft, section = None, None
        elif (severity := _SEVERITY.match(line)) and not draft.severity:
            draft.severity = severity["severity"].strip()
        else:
            draft.text.append(line)
    return tuple(d.freeze() for d in drafts)


def fenced_content(text: str) -> str | None:
    """The content between the real markers of a user message, or None if it has none.

    The nonce is taken from the first opening marker (the message starts with it). The
    fence opens at that marker followed by a newline and closes at the *last* closing
    marker: content cannot contain the real nonce, so any marker it
    carries is either a different nonce or before the real close.
    """
    found = _OPEN.search(text)
    if found is None:
        return None
    nonce = found["nonce"]
    opening = OPEN_MARKER.format(nonce=nonce) + "\n"
    closing = "\n" + CLOSE_MARKER.format(nonce=nonce)
    start = text.find(opening)
    end = text.rfind(closing)
    if start < 0 or end < start + len(opening) - 1:
        return None
    if end < start + len(opening):
        return ""  # empty content: the closing newline is the opening's newline
    return text[start + len(opening) : end]


def read(messages: Sequence[Mapping[str, object]]) -> ReadPrompt:
    """Rules from the system message(s) and content from the first fenced user message."""
    system = "\n".join(
        message_text(m) for m in messages if m.get("role") in {"system", "developer"}
    )
    users = [message_text(m) for m in messages if m.get("role") == "user"]
    for text in users:
        content = fenced_content(text)
        if content is not None:
            return ReadPrompt(system, parse_rules(system), content, fenced=True)
    return ReadPrompt(system, parse_rules(system), users[-1] if users else "", fenced=False)
