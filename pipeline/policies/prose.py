"""Prose-shaped policy files → a `Policy`: the shape trust-and-safety teams write in.

Such a policy is brought as it is, with only a front-matter header (`format: prose`, its
`id` and `title`) added on top:

    Spam wastes everyone's time. ...           description: everything before the first tier
    🚫 Likely Spam (SP2 – Medium Confidence)   a tier heading: its id (letters and a digit)
                                               and, in the label, its severity
    Unsolicited promotion without deception.   the tier's text; `Output: ...` says what to do
    - SP2.a Cold promotion – “Buy my course”   a rule line: id, name, dash, example(s)
    ✅ Allowed (SP0 – Not spam)                tier digit 0: examples that do not violate

Each rule line becomes a Rule (its tier's text and severity, its own name and examples);
the examples of a tier numbered 0 become the policy's `allowed` examples. Markdown marks
(`#`, `**`, list bullets) around headings and rule lines are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from pipeline.policies.diagnostics import lines_of
from pipeline.policies.header import Header
from pipeline.policies.model import SEVERITIES, TIER_ID, TIER_RULE_ID, Policy, Rule, Severity
from pipeline.policies.parsed import ParsedFile, Reporter

#: `🚫 Likely Spam (SP2 – Medium Confidence)`: the tier id and its label in parentheses at
#: the end of a line.
_TIER = re.compile(rf"^(?P<name>.*?)\(\s*(?P<id>{TIER_ID})\s*[–—:-]\s*(?P<label>[^()]*)\)$")
#: `SP2.a Cold promotion – “Check out my course”`: the name ends at the first dash between
#: spaces. The possessive quantifiers and the look-behind (the separator starts where a run
#: of spaces starts) keep the match linear: with plain `\s+` a long run of spaces in a line
#: cost minutes of backtracking.
_RULE = re.compile(
    rf"^(?P<id>{TIER_RULE_ID})\s++(?P<name>.+?)(?<!\s)\s++[–—-]++\s++(?P<example>.+)$"
)
#: What starts like a rule line and so must be one: `SP2.a`, `SP2.A`, `SP2.a:`.
_RULE_LIKE = re.compile(rf"^{TIER_ID}\.\w")
_FIELD = re.compile(r"^(?P<name>severity|output)\s*:\s*(?P<value>.*)$", re.IGNORECASE)
#: Words of a tier label that name a severity, as the field writes them.
_SEVERITY_WORDS: dict[str, Severity] = {
    **SEVERITIES,
    "moderate": "medium",
    "strong": "high",
    "maximum": "critical",
    "severe": "critical",
}
#: Quotation marks an example may be wrapped in, opening -> closing.
_QUOTES = {"“": "”", '"': '"', "«": "»", "「": "」", "„": "“", "‘": "’", "'": "'"}
_BULLET = re.compile(r"^(?:[-*+]\s+|\d+[.)]\s+)")
_MARKUP = re.compile(r"^(?:#+\s+|[-*•+]\s+|\d+[.)]\s+)")


@dataclass
class _Tier:
    id: str
    line: int
    severity: Severity | None
    text: list[str] = field(default_factory=list)
    output: str = ""
    rules: list[tuple[str, str, list[str], int]] = field(default_factory=list)  # id, name, ex

    @property
    def allowed(self) -> bool:
        return self.id.endswith("0")

    @property
    def code(self) -> str:
        return self.id[:-1]


def parse_prose(
    path: Path,
    body: str,
    header: Header,
    header_lines: dict[str, int],  # noqa: ARG001 - one signature for every parser
) -> ParsedFile:
    """Parse a prose-shaped policy; its header must give the policy's id and title."""
    parser = _ProseParser(path, body)
    parser.read()
    parsed = ParsedFile(path, None, parser.lines, parser.diagnostics, parser.example_lines)
    parsed.heading_lines = set(parser.rule_lines.values())
    for name in ("id", "title"):
        if getattr(header, name) is None:
            parser.error("PE502", 1, f"a prose policy's header must give its '{name}'")
    if not parser.errors and header.id is not None and header.title is not None:
        parsed.policy = parser.policy(header.id, header.title)
    return parsed


class _ProseParser(Reporter):
    def __init__(self, path: Path, body: str) -> None:
        super().__init__(path)
        self.lines = lines_of(body)
        self.description: list[list[str]] = [[]]
        self.tiers: list[_Tier] = []
        self.rule_lines: dict[str, int] = {}
        self.example_lines: dict[str, dict[str, int]] = {}

    def read(self) -> None:
        in_comment = False
        for number, raw in enumerate(self.lines, start=1):
            stripped = raw.strip()
            if stripped.startswith("<!--") or in_comment:
                in_comment = "-->" not in stripped
                continue  # notes for writers are not policy
            self.line(_unmark(stripped), stripped, number)
        if not self.tiers:
            self.error("PE103", 1, "the policy has no tiers ('🚫 Name (SP2 – Medium)')")
        if not _paragraphs(self.description):
            self.error("PE102", 1, "the policy has no description before its first tier")
        for tier in self.tiers:
            self.finish(tier, self.tiers[0].code)

    def line(self, text: str, written: str, number: int) -> None:
        tier = self.tiers[-1] if self.tiers else None
        heading = _TIER.match(text)
        if heading and not _RULE_LIKE.match(text):
            self.start_tier(heading, number)
        elif _RULE_LIKE.match(text):
            self.rule(tier, text, number)
        elif tier is None and not written:
            self.description.append([])  # a blank line ends a paragraph
        elif tier is None:
            self.description[-1].append(written)
        elif field_ := _FIELD.match(text):
            self.tier_field(tier, field_["name"].lower(), field_["value"].strip(), number)
        elif written:
            tier.text.append(written)

    def start_tier(self, heading: re.Match[str], number: int) -> None:
        tier_id = heading["id"]
        if any(tier.id == tier_id for tier in self.tiers):
            self.error("PE202", number, f"tier {tier_id} appears twice")
        words = re.findall(r"[a-z]+", heading["label"].lower())
        severity = next((_SEVERITY_WORDS[w] for w in words if w in _SEVERITY_WORDS), None)
        self.tiers.append(_Tier(tier_id, number, severity))

    def tier_field(self, tier: _Tier, name: str, value: str, number: int) -> None:
        if name == "output":
            tier.output = value
            return
        severity = SEVERITIES.get(value.lower())
        if severity is None:
            self.error(
                "PE302",
                number,
                f"tier {tier.id} has severity '{value}'; use one of {', '.join(SEVERITIES)}",
            )
        tier.severity = severity or tier.severity

    def rule(self, tier: _Tier | None, text: str, number: int) -> None:
        match = _RULE.match(text)
        if match is None:
            self.error(
                "PE201",
                number,
                f"'{text}': a rule line is a rule id such as SP2.a (the tier id, a dot, a "
                "lower-case letter), a name, a dash and the example: "
                "'SP2.a Cold promotion – “Check out my course”'",
            )
            return
        rule_id = match["id"]
        if tier is None:
            self.error("PE104", number, f"rule {rule_id} comes before any tier heading")
            return
        if rule_id.partition(".")[0] != tier.id:
            self.error("PE203", number, f"rule {rule_id} is listed under tier {tier.id}")
        if rule_id in self.rule_lines:
            self.error(
                "PE202",
                number,
                f"duplicate rule id {rule_id}: also defined at line {self.rule_lines[rule_id]}",
            )
            return
        self.rule_lines[rule_id] = number
        name = _unbold(match["name"])
        examples = _examples(match["example"])
        if not name:
            self.error("PE204", number, f"rule {rule_id} has no name before its dash")
        if not all(examples):
            self.error("PE402", number, f"an example of rule {rule_id} is empty")
        owner = "allowed" if tier.allowed else rule_id
        for example in examples:
            self.example_lines.setdefault(owner, {})[example] = number
        tier.rules.append((rule_id, name, examples, number))

    def finish(self, tier: _Tier, code: str) -> None:
        if tier.code != code:
            self.error(
                "PE203",
                tier.line,
                f"tier {tier.id}: a policy's tiers share one code, and the first tier's is {code}",
            )
        if not tier.rules:
            self.error(
                "PE401",
                tier.line,
                f"tier {tier.id} has no rule lines ('{tier.id}.a Name – “example”')",
            )
        if tier.allowed:
            return
        if tier.severity is None:
            self.error(
                "PE301",
                tier.line,
                f"tier {tier.id} gives no severity: name it in the heading, '({tier.id} – "
                f"Medium)', or add a line 'Severity: <level>' with one of {', '.join(SEVERITIES)}",
            )
        if not tier.text and not tier.output:
            self.error("PE205", tier.line, f"tier {tier.id} has no text saying what it covers")

    def policy(self, policy_id: str, title: str) -> Policy:
        rules: list[Rule] = []
        allowed: list[str] = []
        for tier in self.tiers:
            if tier.allowed:
                allowed.extend(e for _, _, examples, _ in tier.rules for e in examples)
                continue
            text = _paragraphs([tier.text])
            if tier.output:
                text.append(f"Output: {tier.output}")
            assert tier.severity is not None  # noqa: S101 - finish() reported it otherwise
            rules.extend(
                Rule(
                    id=rule_id,
                    policy_id=policy_id,
                    title=name,
                    text="\n\n".join(text),
                    severity=tier.severity,
                    violating=tuple(examples),
                    source=f"{self.path.name}:{number}",
                )
                for rule_id, name, examples, number in tier.rules
            )
        return Policy(
            id=policy_id,
            title=title,
            description="\n\n".join(_paragraphs(self.description)),
            rules=tuple(rules),
            allowed=tuple(allowed),
            source=f"{self.path.name}:1",
        )


def _unmark(text: str) -> str:
    """A line without its Markdown dressing: heading marks, bullets, bold around it."""
    text = _MARKUP.sub("", text)
    return _unbold(text)


def _unbold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"\1", text).strip()


def _examples(written: str) -> list[str]:
    """`“one”, “two”` is two examples; unquoted text is one example as written."""
    written = written.strip()
    close = _QUOTES.get(written[:1])
    if close is None:
        return [written]
    examples = []
    rest = written
    while rest and (close := _QUOTES.get(rest[:1])) is not None:
        end = rest.find(close, 1)
        if end < 0:
            return [written]  # an unbalanced quote: the example is the text as written
        examples.append(rest[1:end].strip())
        rest = rest[end + 1 :].lstrip(" ,;/").removeprefix("or ").lstrip()
    return examples if not rest else [written]


def _paragraphs(blocks: list[list[str]]) -> list[str]:
    """Blocks as the Markdown parser keeps them: a paragraph on one line, a list line by line.

    A list starts a block of its own even without a blank line before it, as in Markdown.
    """
    paragraphs = []
    for block in blocks:
        lines = [line.strip() for line in block if line.strip()]
        runs = [list(run) for _, run in groupby(lines, key=lambda line: bool(_BULLET.match(line)))]
        for run in runs:
            paragraphs.append("\n".join(run) if _BULLET.match(run[0]) else " ".join(run))
    return paragraphs
