"""Markdown-shaped policy files → a `Policy`, with every problem as a `Diagnostic`.

Policy writers author the files by hand, so a file reads like a policy document:

    # Harassment                          policy title; the paragraphs below it describe it
    ## HARASSMENT.1 Insults aimed at a person    a rule: stable id, then its title
    Severity: medium                      then the rule text, one or more paragraphs
    ### Violates                          list items: examples that break the rule
    ### Does not violate                  list items: near misses that do not
    ## Allowed                            optional: content the whole policy allows

The policy id is the shared prefix of the rule ids. policies/README.md is the writers'
guide. Parsing walks markdown-it tokens, which carry line numbers, so every problem names a
file and a line; all problems of a file are reported together.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from pipeline.policies.diagnostics import lines_of
from pipeline.policies.header import Header
from pipeline.policies.model import (
    RULE_ID,
    SEVERITIES,
    TIER_RULE_ID,
    Policy,
    Rule,
    Severity,
)
from pipeline.policies.parsed import ParsedFile, Reporter

#: `## HARASSMENT.1 Title`, `## HARASSMENT.1: Title`, `## HARASSMENT.1 — Title`.
_RULE_HEADING = re.compile(r"^(?P<id>[^\s:–—-]+)\s*[:–—-]?\s*(?P<title>.*)$", re.DOTALL)
#: The value is stripped by the caller: a lazy `(.*?)\s*$` backtracks quadratically on a
#: line with a long run of spaces inside.
_SEVERITY_LINE = re.compile(r"^\s*severity\s*:(?P<value>.*)$", re.IGNORECASE)
_SECTIONS: dict[str, Literal["violating", "non_violating"]] = {
    "violates": "violating",
    "does not violate": "non_violating",
}
_ALLOWED = "allowed"  # `## Allowed`: examples the whole policy allows
_SECTION_NAMES = " and ".join(f"'### {name.capitalize()}'" for name in _SECTIONS)

# The parser only reads Markdown: html is kept as text, never rendered. `text_join` is off so
# that an escaped `\(` stays a token of its own and can be told apart from a note's `(`.
_MARKDOWN = MarkdownIt("commonmark").disable("text_join")

# Escaped parentheses are swapped for these private-use characters while trailing notes are
# split off, then swapped back.
_ESCAPED = {"(": "\ue000", ")": "\ue001"}


class _RuleDraft:
    """A rule while its section of the file is read; checked and frozen in `finish`."""

    def __init__(self, rule_id: str, title: str, line: int) -> None:
        self.id = rule_id
        self.title = title
        self.line = line
        self.severity: Severity | None = None
        self.severity_line: int | None = None  # set even when the value was invalid
        self.text: list[str] = []
        self.examples: dict[str, list[str]] = {"violating": [], "non_violating": []}
        self.section: str | None = None
        self.section_lines: dict[str, int] = {}
        self.broken_sections: set[str] = set()  # already reported: no follow-on errors


def parse_markdown(
    path: Path, body: str, header: Header, header_lines: dict[str, int]
) -> ParsedFile:
    """Parse a Markdown policy; a header's id and title must agree with the body's."""
    parser = _PolicyParser(path, body, header.id)
    policy = parser.parse()
    parsed = ParsedFile(path, None, parser.lines, parser.diagnostics, parser.example_lines)
    parsed.heading_lines = set(parser.rule_lines.values())
    if policy is not None:
        if header.id is not None and header.id != policy.id:
            parser.error(
                "PE203",
                header_lines.get("id", 1),
                f"the header says id {header.id}, but the rules use {policy.id}",
            )
        if header.title is not None and header.title != policy.title:
            parser.error(
                "PE101",
                header_lines.get("title", 1),
                f"the header's title '{header.title}' differs from the '# {policy.title}' line",
            )
    parsed.policy = policy if not parser.errors else None
    return parsed


class _PolicyParser(Reporter):
    def __init__(self, path: Path, source: str, header_id: str | None) -> None:
        super().__init__(path)
        self.header_id = header_id
        self.lines = lines_of(source)
        self.root = SyntaxTreeNode(_MARKDOWN.parse(source))
        self.allowed: list[str] = []
        self.in_allowed = False
        self.example_lines: dict[str, dict[str, int]] = {}
        self.title: str | None = None
        self.title_line = 1
        self.untitled_reported = False
        self.rule_headings = 0
        self.description: list[str] = []
        self.policy_id: tuple[str, int] | None = None  # id and the line that set it
        self.rules: list[Rule] = []
        self.rule_lines: dict[str, int] = {}
        self.draft: _RuleDraft | None = None
        # After a rule heading that could not be read, its body is skipped, not blamed.
        self.skipping = False

    def parse(self) -> Policy | None:
        for node in self.root.children:
            if _is_comment(node):
                continue  # <!-- notes for writers --> are not policy
            line = _line_of(node)
            if self.title is None and node.tag != "h1" and not self.untitled_reported:
                # Reported once; the rest is still read so that its problems show too.
                self.error(
                    "PE101", line, "the file must start with the policy title, a '# Title' line"
                )
                self.untitled_reported = True
            if node.type == "heading":
                self.heading(node, line)
            else:
                self.block(node, line)
        self.finish_rule()
        if self.title is None:
            if not self.untitled_reported:
                self.error("PE101", 1, "the file is empty: it needs a '# Title' line and rules")
            return None
        if not self.description:
            self.error(
                "PE102",
                self.title_line,
                "the policy has no description: write what it covers and why in the "
                "paragraphs between the '# Title' and the first rule",
            )
        if not self.rule_headings:
            self.error("PE103", self.title_line, "the policy has no rules ('## POLICY.1 Title')")
        if self.policy_id is not None and self.owner(self.policy_id[0]) is None:
            self.error(
                "PE502",
                1,
                "rules with tier ids such as GH2.a need the policy id in a front-matter "
                "header ('---', 'id: POLICY', '---')",
            )
        if self.errors or self.policy_id is None:
            return None
        return Policy(
            id=self.owner(self.policy_id[0]) or "",
            title=self.title,
            description="\n\n".join(self.description),
            rules=tuple(self.rules),
            allowed=tuple(self.allowed),
            source=f"{self.path.name}:{self.title_line}",
        )

    # --------------------------------------------------------------------- headings

    def heading(self, node: SyntaxTreeNode, line: int) -> None:
        text = _plain(node).strip()
        level = int(node.tag[1:])
        if level == 1:
            if self.title is not None:
                self.error("PE101", line, "a second '# Title': a file holds one policy")
            elif not text:
                self.error("PE101", line, "the '# Title' heading is empty")
                self.title = ""
            else:
                self.title, self.title_line = text, line
        elif level == 2:
            self.finish_rule()
            self.in_allowed = text.rstrip(":").strip().lower() == _ALLOWED
            if self.in_allowed:
                self.skipping = False
            else:
                self.start_rule(text, line)
        elif level == 3:
            self.section(text, line)
        else:
            self.error("PE104", line, f"'{'#' * level} {text}': headings below ### are not used")

    def start_rule(self, text: str, line: int) -> None:
        self.rule_headings += 1
        match = _RULE_HEADING.match(text)
        rule_id, title = (match["id"], match["title"].strip()) if match else (text, "")
        if not re.fullmatch(RULE_ID, rule_id):
            self.error(
                "PE201",
                line,
                f"'## {text}': a rule heading starts with a rule id POLICY.N (upper-case "
                "letters, digits and _, a dot, a number from 1), then the rule's title, "
                "e.g. '## HARASSMENT.1 Insults aimed at a person'",
            )
            self.skipping = True
            return
        self.skipping = False
        prefix = _prefix(rule_id)
        if self.policy_id is None:
            self.policy_id = (prefix, line)
        elif prefix != self.policy_id[0]:
            self.error(
                "PE203",
                line,
                f"rule {rule_id} has policy prefix {prefix}, but this file's rules use "
                f"{self.policy_id[0]} (line {self.policy_id[1]}); all rules of a policy "
                "share its prefix",
            )
        if rule_id in self.rule_lines:
            self.error(
                "PE202",
                line,
                f"duplicate rule id {rule_id}: also defined at line {self.rule_lines[rule_id]}",
            )
        else:
            self.rule_lines[rule_id] = line
        if not title:
            self.error("PE204", line, f"rule {rule_id} has no title after its id")
        self.draft = _RuleDraft(rule_id, title, line)

    def owner(self, prefix: str) -> str | None:
        """The policy id of rules with this prefix: a tier code's comes from the header."""
        return self.header_id if _is_code(prefix) else prefix

    def section(self, text: str, line: int) -> None:
        if self.skipping:
            return
        draft = self.draft
        if self.in_allowed:
            self.error("PE104", line, f"'### {text}': '## Allowed' is one list, with no sections")
            return
        if draft is None:
            self.error("PE104", line, f"'### {text}' comes before any rule ('## POLICY.1 Title')")
            return
        name = re.sub(r"\s+", " ", text.rstrip(":").strip().lower())
        section = _SECTIONS.get(name)
        if section is None:
            self.error(
                "PE104",
                line,
                f"unknown section '### {text}' in rule {draft.id}; use {_SECTION_NAMES}",
            )
            draft.section = "unknown"  # its content is part of the same mistake
            return
        if section in draft.section_lines:
            self.error(
                "PE104",
                line,
                f"'### {text}' appears twice in rule {draft.id} (first at line "
                f"{draft.section_lines[section]}); put all its examples in one list",
            )
        draft.section_lines.setdefault(section, line)
        draft.section = section

    # --------------------------------------------------------------------- bodies

    def block(self, node: SyntaxTreeNode, line: int) -> None:
        if self.skipping:
            return
        draft = self.draft
        if self.in_allowed:
            for text, item_line in self.list_items(node, line, "'## Allowed'", "allowed") or []:
                self.allowed.append(text)
                self.example_lines.setdefault("allowed", {})[text] = item_line
        elif draft is None:
            self.description.append(self.source_of(node))
        elif draft.section is None:
            self.rule_body(draft, node, line)
        elif draft.section != "unknown":
            self.examples(draft, draft.section, node, line)

    def rule_body(self, draft: _RuleDraft, node: SyntaxTreeNode, line: int) -> None:
        """Rule text; a paragraph starting `Severity:` sets the severity instead."""
        text = self.source_of(node)
        if node.type == "paragraph":
            # A `Severity:` line may open a paragraph of rule text or sit inside one; it
            # is never text (a second one is a mistake, not policy).
            source = self.lines[line - 1 : _end_of(node)]
            plain = _plain(node, softbreak="\n").split("\n")
            kept = []
            for offset, (written, read) in enumerate(zip(source, plain, strict=False)):
                severity = _SEVERITY_LINE.match(read)
                if severity:
                    self.severity(draft, severity["value"].strip(), line + offset)
                else:
                    kept.append(written)
            text = _unwrap(kept)
        if text:
            draft.text.append(text)

    def severity(self, draft: _RuleDraft, value: str, line: int) -> None:
        if draft.severity_line is not None:
            self.error(
                "PE303",
                line,
                f"rule {draft.id} gives its severity twice (first at line {draft.severity_line})",
            )
            return
        draft.severity_line = line
        draft.severity = SEVERITIES.get(value.lower())
        if draft.severity is None:
            self.error(
                "PE302",
                line,
                f"rule {draft.id} has severity '{value}'; use one of {', '.join(SEVERITIES)}",
            )

    def examples(self, draft: _RuleDraft, section: str, node: SyntaxTreeNode, line: int) -> None:
        where = f"'### {_label(section)}' of rule {draft.id}"
        items = self.list_items(node, line, where, f"rule {draft.id}")
        if items is None:
            draft.broken_sections.add(section)
            return
        for text, item_line in items:
            draft.examples[section].append(text)
            self.example_lines.setdefault(draft.id, {})[text] = item_line
        if len(items) < len(node.children):
            draft.broken_sections.add(section)

    def list_items(
        self, node: SyntaxTreeNode, line: int, where: str, owner: str
    ) -> list[tuple[str, int]] | None:
        """The examples of a list with their lines; None (reported) when it is no list."""
        if node.type not in ("bullet_list", "ordered_list"):
            why = (
                "a line indented by a tab or 4 spaces is a code block in Markdown; start "
                "list items at the margin"
                if node.type == "code_block"
                else "explanations belong in the rule text"
            )
            self.error(
                "PE402", line, f"under {where} write examples as list items ('- ...'); {why}"
            )
            return None
        items = []
        for item in node.children:
            item_line = _line_of(item)
            if len(item.children) == 1 and item.children[0].type == "paragraph":
                items.append((_example_text(item.children[0]), item_line))
            elif not item.children:
                self.error("PE402", item_line, f"an example of {owner} is empty")
            else:
                self.error(
                    "PE402",
                    item_line,
                    f"an example of {owner} must be one paragraph of text, with no nested list",
                )
        return items

    def finish_rule(self) -> None:
        draft, self.draft = self.draft, None
        if draft is None:
            return
        if draft.severity_line is None:
            self.error(
                "PE301",
                draft.line,
                f"rule {draft.id} has no severity: add a line 'Severity: <level>' with one "
                f"of {', '.join(SEVERITIES)}",
            )
        if not draft.text:
            self.error("PE205", draft.line, f"rule {draft.id} has no rule text under its heading")
        if not draft.examples["violating"] and "violating" not in draft.broken_sections:
            self.error(
                "PE401",
                draft.line,
                f"rule {draft.id} has no violating example: add a '### Violates' list",
            )
        overlap = set(draft.examples["violating"]) & set(draft.examples["non_violating"])
        for example in sorted(overlap):
            self.error(
                "PE403", draft.line, f"rule {draft.id} lists '{example}' as violating and not"
            )
        owner = self.owner(_prefix(draft.id))
        if self.errors or draft.severity is None or owner is None:
            return  # the Policy is not built anyway; do not build a Rule from bad parts
        self.rules.append(
            Rule(
                id=draft.id,
                policy_id=owner,
                title=draft.title,
                text="\n\n".join(draft.text),
                severity=draft.severity,
                violating=tuple(draft.examples["violating"]),
                non_violating=tuple(draft.examples["non_violating"]),
                source=f"{self.path.name}:{draft.line}",
            )
        )

    def source_of(self, node: SyntaxTreeNode) -> str:
        """A block as the writer wrote it, Markdown and all: the model reads Markdown."""
        lines = self.lines[_line_of(node) - 1 : _end_of(node)]
        return _unwrap(lines) if node.type == "paragraph" else "\n".join(lines).strip()


def _prefix(rule_id: str) -> str:
    """What the rules of one policy share: HARASSMENT of HARASSMENT.2, GH of GH2.a."""
    if re.fullmatch(TIER_RULE_ID, rule_id):
        return "tier " + rule_id.rstrip("abcdefghijklmnopqrstuvwxyz.0123456789")
    return rule_id.rpartition(".")[0]


def _is_code(prefix: str) -> bool:
    return prefix.startswith("tier ")


def _unwrap(lines: list[str]) -> str:
    """A paragraph on one line, so re-wrapping a file does not change the set's version."""
    return " ".join(line.strip() for line in lines if line.strip())


def _line_of(node: SyntaxTreeNode) -> int:
    return node.map[0] + 1 if node.map else 1


def _end_of(node: SyntaxTreeNode) -> int:
    return node.map[1] if node.map else 0


def _is_comment(node: SyntaxTreeNode) -> bool:
    return node.type == "html_block" and node.content.lstrip().startswith("<!--")


def _label(section: str) -> str:
    return next(name for name, value in _SECTIONS.items() if value == section).capitalize()


def _plain(node: SyntaxTreeNode, softbreak: str = " ", *, mark_escapes: bool = False) -> str:
    """The text of inline Markdown as a reader sees it: no markup, escapes resolved."""
    if mark_escapes and node.type == "text_special" and node.info == "escape":
        return _ESCAPED.get(node.content, node.content)
    if node.type in ("text", "text_special", "code_inline", "html_inline"):
        return node.content
    if node.type == "softbreak":
        return softbreak
    if node.type == "hardbreak":
        return "\n"
    return "".join(_plain(child, softbreak, mark_escapes=mark_escapes) for child in node.children)


def _example_text(paragraph: SyntaxTreeNode) -> str:
    """An example without its trailing `(note for humans)`; `\\(` keeps a literal one."""
    text = _plain(paragraph, mark_escapes=True).strip()
    if text.endswith(")"):
        depth = 0
        for i in range(len(text) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                # Only a note after the example, never an example that is all parentheses.
                if i > 0 and text[i - 1].isspace():
                    text = text[:i].rstrip()
                break
    for char, placeholder in _ESCAPED.items():
        text = text.replace(placeholder, char)
    return text
