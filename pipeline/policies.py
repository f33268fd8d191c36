"""Policy files (Markdown, one policy per file) → a validated, versioned `PolicySet`.

Policy writers author the files by hand, so a file reads like a policy document:

    # Harassment                          policy title; the paragraphs below it describe it
    ## HARASSMENT.1 Insults aimed at a person    a rule: stable id, then its title
    Severity: medium                      then the rule text, one or more paragraphs
    ### Violates                          list items: examples that break the rule
    ### Does not violate                  list items: near misses that do not

The policy id is the shared prefix of the rule ids. policies/README.md is the writers'
guide. Parsing walks markdown-it tokens, which carry line numbers, so every error names a
file and a line; all errors of a file are reported together.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Literal, get_args

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    computed_field,
    model_validator,
)
from rapidfuzz import fuzz

from pipeline.errors import PolicyError, PolicyErrors

__all__ = [
    "Policy",
    "PolicySet",
    "Rule",
    "Severity",
    "default_policies_dir",
    "load_policies",
    "load_policy_file",
]

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: dict[str, Severity] = {level: level for level in get_args(Severity)}

#: Upper-case words joined by `_` (SELF_HARM); a rule adds `.N` with N from 1, no leading
#: zero, so HARASSMENT.01 cannot become a second spelling of HARASSMENT.1.
POLICY_ID = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"
RULE_ID = rf"{POLICY_ID}\.[1-9][0-9]*"

#: Files in a policies directory that are documentation, not policy.
NOT_POLICIES = frozenset({"readme.md"})

#: `nearest()` only suggests rules of policies whose id is at least this similar (0-100) to
#: the cited prefix. On the default set: HARASMENT 95, HATE_SPEECH 100 (HATE), SCAM 75
#: (SPAM), SEX 67 (SEXUAL) are suggested; THREAT 60 (HATE), PRIVACY 53, FOO 27 are not.
NEAREST_PREFIX_CUTOFF = 65.0


class Rule(BaseModel):
    """One rule: what the model cites (`id`) and what it reads (text, examples)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=rf"^{RULE_ID}$", description="Stable id, e.g. HARASSMENT.2.")
    policy_id: str = Field(pattern=rf"^{POLICY_ID}$")
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    severity: Severity
    violating: tuple[str, ...] = Field(min_length=1)
    non_violating: tuple[str, ...] = ()
    source: str = Field(description="Where it was written, e.g. harassment.md:12.")

    @model_validator(mode="after")
    def _id_in_policy(self) -> Rule:
        if self.id.rpartition(".")[0] != self.policy_id:
            raise ValueError(f"rule id {self.id} is not in policy {self.policy_id}")
        return self


class Policy(BaseModel):
    """One policy file: a title, a description and its rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=rf"^{POLICY_ID}$")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    source: str

    @model_validator(mode="after")
    def _rules_in_policy(self) -> Policy:
        strays = [rule.id for rule in self.rules if rule.policy_id != self.id]
        if strays:
            raise ValueError(f"rules {strays} do not belong to policy {self.id}")
        return self


class PolicySet(BaseModel):
    """Every loaded policy; `version` is a hash of what the model is shown, not of files."""

    # Frozen and hashable: prompt.system_message is lru_cached on the PolicySet itself.
    # extra="ignore" lets a dump (which carries the computed `version`) validate back.
    model_config = ConfigDict(frozen=True, extra="ignore")

    policies: tuple[Policy, ...]

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicySet:
        # The loader reports these with file and line first; this guards sets built in code.
        for kind, ids in (
            ("policy", [policy.id for policy in self.policies]),
            ("rule", [rule.id for rule in self.rules]),
        ):
            duplicated = sorted({i for i in ids if ids.count(i) > 1})
            if duplicated:
                raise ValueError(f"duplicate {kind} ids: {', '.join(duplicated)}")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def version(self) -> str:
        """First 12 hex digits of a sha256 over the content, in load order.

        `source` is left out: moving a file or adding a blank line changes no rule, so it
        must not change the version that every Decision records.
        """
        content = [
            policy.model_dump(
                mode="json", exclude={"source": True, "rules": {"__all__": {"source"}}}
            )
            for policy in self.policies
        ]
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]

    @cached_property
    def rules(self) -> tuple[Rule, ...]:
        """Every rule of every policy, in load order."""
        return tuple(rule for policy in self.policies for rule in policy.rules)

    @cached_property
    def _by_id(self) -> dict[str, Rule]:
        return {rule.id: rule for rule in self.rules}

    def rule(self, rule_id: str) -> Rule | None:
        return self._by_id.get(rule_id)

    def __contains__(self, rule_id: object) -> bool:
        return isinstance(rule_id, str) and rule_id in self._by_id

    def nearest(self, rule_id: str, k: int = 3) -> list[str]:
        """The `k` real rule ids closest to a cited id that does not exist.

        Rules of the policy whose id best matches the cited prefix come first (a model
        that writes HARASSMENT.9 or HARASMENT.2 meant a harassment rule, not HATE.2), then
        the closest whole ids within it. Nothing is suggested for an unrelated prefix.
        """
        cited = rule_id.strip().upper()
        prefix = cited.rpartition(".")[0] or cited

        def rank(rule: Rule) -> tuple[float, float]:
            return (_prefix_similarity(prefix, rule.policy_id), fuzz.ratio(cited, rule.id))

        ranked = sorted(self.rules, key=rank, reverse=True)  # stable: ties keep file order
        return [rule.id for rule in ranked if rank(rule)[0] >= NEAREST_PREFIX_CUTOFF][:k]


def _prefix_similarity(cited: str, policy_id: str) -> float:
    """Typos score by edit ratio; an extra word (HATE_SPEECH for HATE) by shared words."""
    words = [re.sub(r"[_\W]+", " ", s) for s in (cited, policy_id)]
    return max(fuzz.ratio(cited, policy_id), fuzz.token_set_ratio(*words))


# ----------------------------------------------------------------------------- loading


def default_policies_dir() -> Path:
    """The policy set shipped with quoteguard: the repository's `policies/` folder."""
    # Not importlib.resources.files("policies"). `policies` is a data-only namespace package,
    # and files() of one raises NotADirectoryError under our setuptools editable install
    # (the finder's path-hook placeholder sits in its __path__; python/importlib_resources
    # #311); elsewhere it merges every `policies/` folder on sys.path, the working
    # directory's under `python -m`. The folder beside this package is the shipped one in a
    # checkout, an editable install and a wheel alike.
    return Path(__file__).resolve().parent.parent / "policies"


def load_policies(path: Path | None = None) -> PolicySet:
    """Load a directory of policy files (`*.md` except README.md) or one file.

    Every problem in every file is reported at once, as a `PolicyErrors` when there are
    several; files load in name order, which is the order the model reads them in.
    """
    path = default_policies_dir() if path is None else Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.md") if p.name.lower() not in NOT_POLICIES)
        if not files:
            raise PolicyError(path, None, "no policy files (*.md other than README.md) here")
    elif path.is_file():
        files = [path]
    else:
        raise PolicyError(path, None, "no such policy file or directory")

    errors: list[PolicyError] = []
    loaded: list[tuple[Path, Policy]] = []
    for file in files:
        try:
            loaded.append((file, load_policy_file(file)))
        except PolicyErrors as exc:
            errors.extend(exc.errors)
        except PolicyError as exc:
            errors.append(exc)
    errors.extend(_cross_file_errors(loaded))
    _raise(path, errors)
    return PolicySet(policies=tuple(policy for _, policy in loaded))


def _cross_file_errors(loaded: list[tuple[Path, Policy]]) -> Iterator[PolicyError]:
    """A policy id, and so each of its rule ids, belongs to one file only."""
    first: dict[str, Policy] = {}
    seen: dict[str, Rule] = {}
    for path, policy in loaded:
        if policy.id in first:
            other = first[policy.id]
            yield PolicyError(
                path,
                _line(policy.rules[0].source),
                f"policy id {policy.id} is already used by {other.source}; each policy "
                "lives in one file, so give this one its own rule-id prefix",
            )
        first.setdefault(policy.id, policy)
        for rule in policy.rules:
            if rule.id in seen:
                yield PolicyError(
                    path,
                    _line(rule.source),
                    f"duplicate rule id {rule.id}: also defined at {seen[rule.id].source}",
                )
            seen.setdefault(rule.id, rule)


def _line(source: str) -> int:
    return int(source.rpartition(":")[2])


def _raise(path: Path, errors: list[PolicyError]) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise PolicyErrors(path, None, f"{len(errors)} problems", errors)


def load_policy_file(path: Path) -> Policy:
    """Parse and validate one policy file; raises with every problem found in it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(path, None, f"cannot read the file: {exc.strerror}") from exc
    try:
        # utf-8-sig: editors on Windows like to start files with a byte-order mark.
        source = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(
            path,
            line,
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
        ) from exc
    parser = _PolicyParser(path, source)
    try:
        policy = parser.parse()
    except ValidationError as exc:  # a gap in the parser's checks; still say which file
        raise PolicyError(path, None, f"invalid policy: {exc}") from exc
    # In file order, not in the order the checks happened to run.
    _raise(path, sorted(parser.errors, key=lambda error: error.line or 0))
    assert policy is not None  # noqa: S101 - parse() returns None only alongside errors
    return policy


# ----------------------------------------------------------------------------- parsing

#: `## HARASSMENT.1 Title`, `## HARASSMENT.1: Title`, `## HARASSMENT.1 — Title`.
_RULE_HEADING = re.compile(r"^(?P<id>[^\s:–—-]+)\s*[:–—-]?\s*(?P<title>.*)$", re.DOTALL)
_SEVERITY_LINE = re.compile(r"^\s*severity\s*:\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_SECTIONS: dict[str, Literal["violating", "non_violating"]] = {
    "violates": "violating",
    "does not violate": "non_violating",
}
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


class _PolicyParser:
    def __init__(self, path: Path, source: str) -> None:
        self.path = path
        self.lines = source.splitlines()
        self.root = SyntaxTreeNode(_MARKDOWN.parse(source))
        self.errors: list[PolicyError] = []
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

    def error(self, line: int | None, message: str) -> None:
        self.errors.append(PolicyError(self.path, line, message))

    def parse(self) -> Policy | None:
        for node in self.root.children:
            if _is_comment(node):
                continue  # <!-- notes for writers --> are not policy
            line = _line_of(node)
            if self.title is None and node.tag != "h1" and not self.untitled_reported:
                # Reported once; the rest is still read so that its problems show too.
                self.error(line, "the file must start with the policy title, a '# Title' line")
                self.untitled_reported = True
            if node.type == "heading":
                self.heading(node, line)
            else:
                self.block(node, line)
        self.finish_rule()
        if self.title is None:
            if not self.untitled_reported:
                self.error(1, "the file is empty: it needs a '# Title' line and rules")
            return None
        if not self.description:
            self.error(
                self.title_line,
                "the policy has no description: write what it covers and why in the "
                "paragraphs between the '# Title' and the first rule",
            )
        if not self.rule_headings:
            self.error(self.title_line, "the policy has no rules ('## POLICY.1 Title')")
        if self.errors or self.policy_id is None:
            return None
        return Policy(
            id=self.policy_id[0],
            title=self.title,
            description="\n\n".join(self.description),
            rules=tuple(self.rules),
            source=f"{self.path.name}:{self.title_line}",
        )

    # --------------------------------------------------------------------- headings

    def heading(self, node: SyntaxTreeNode, line: int) -> None:
        text = _plain(node).strip()
        level = int(node.tag[1:])
        if level == 1:
            if self.title is not None:
                self.error(line, "a second '# Title': a file holds one policy")
            elif not text:
                self.error(line, "the '# Title' heading is empty")
                self.title = ""
            else:
                self.title, self.title_line = text, line
        elif level == 2:
            self.finish_rule()
            self.start_rule(text, line)
        elif level == 3:
            self.section(text, line)
        else:
            self.error(line, f"'{'#' * level} {text}': headings below ### are not used")

    def start_rule(self, text: str, line: int) -> None:
        self.rule_headings += 1
        match = _RULE_HEADING.match(text)
        rule_id, title = (match["id"], match["title"].strip()) if match else (text, "")
        if not re.fullmatch(RULE_ID, rule_id):
            self.error(
                line,
                f"'## {text}': a rule heading starts with a rule id POLICY.N (upper-case "
                "letters, digits and _, a dot, a number from 1), then the rule's title, "
                "e.g. '## HARASSMENT.1 Insults aimed at a person'",
            )
            self.skipping = True
            return
        self.skipping = False
        prefix = rule_id.rpartition(".")[0]
        if self.policy_id is None:
            self.policy_id = (prefix, line)
        elif prefix != self.policy_id[0]:
            self.error(
                line,
                f"rule {rule_id} has policy prefix {prefix}, but this file's rules use "
                f"{self.policy_id[0]} (line {self.policy_id[1]}); all rules of a policy "
                "share its prefix",
            )
        if rule_id in self.rule_lines:
            self.error(
                line,
                f"duplicate rule id {rule_id}: also defined at line {self.rule_lines[rule_id]}",
            )
        else:
            self.rule_lines[rule_id] = line
        if not title:
            self.error(line, f"rule {rule_id} has no title after its id")
        self.draft = _RuleDraft(rule_id, title, line)

    def section(self, text: str, line: int) -> None:
        if self.skipping:
            return
        draft = self.draft
        if draft is None:
            self.error(line, f"'### {text}' comes before any rule ('## POLICY.1 Title')")
            return
        name = re.sub(r"\s+", " ", text.rstrip(":").strip().lower())
        section = _SECTIONS.get(name)
        if section is None:
            self.error(
                line, f"unknown section '### {text}' in rule {draft.id}; use {_SECTION_NAMES}"
            )
            draft.section = "unknown"  # its content is part of the same mistake
            return
        if section in draft.section_lines:
            self.error(
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
        if draft is None:
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
                    self.severity(draft, severity["value"], line + offset)
                else:
                    kept.append(written)
            text = _unwrap(kept)
        if text:
            draft.text.append(text)

    def severity(self, draft: _RuleDraft, value: str, line: int) -> None:
        if draft.severity_line is not None:
            self.error(
                line,
                f"rule {draft.id} gives its severity twice (first at line {draft.severity_line})",
            )
            return
        draft.severity_line = line
        draft.severity = SEVERITIES.get(value.lower())
        if draft.severity is None:
            self.error(
                line,
                f"rule {draft.id} has severity '{value}'; use one of {', '.join(SEVERITIES)}",
            )

    def examples(self, draft: _RuleDraft, section: str, node: SyntaxTreeNode, line: int) -> None:
        if node.type not in ("bullet_list", "ordered_list"):
            self.error(
                line,
                f"under '### {_label(section)}' of rule {draft.id} write examples as list items "
                "('- ...'); explanations belong in the rule text",
            )
            draft.broken_sections.add(section)
            return
        for item in node.children:
            item_line = _line_of(item)
            if len(item.children) == 1 and item.children[0].type == "paragraph":
                draft.examples[section].append(_example_text(item.children[0]))
                continue
            draft.broken_sections.add(section)
            if not item.children:
                self.error(item_line, f"an example of rule {draft.id} is empty")
            else:
                self.error(
                    item_line,
                    f"an example of rule {draft.id} must be one paragraph of text, "
                    "with no nested list",
                )

    def finish_rule(self) -> None:
        draft, self.draft = self.draft, None
        if draft is None:
            return
        if draft.severity_line is None:
            self.error(
                draft.line,
                f"rule {draft.id} has no severity: add a line 'Severity: <level>' with one "
                f"of {', '.join(SEVERITIES)}",
            )
        if not draft.text:
            self.error(draft.line, f"rule {draft.id} has no rule text under its heading")
        if not draft.examples["violating"] and "violating" not in draft.broken_sections:
            self.error(
                draft.line,
                f"rule {draft.id} has no violating example: add a '### Violates' list",
            )
        overlap = set(draft.examples["violating"]) & set(draft.examples["non_violating"])
        for example in sorted(overlap):
            self.error(draft.line, f"rule {draft.id} lists '{example}' as violating and not")
        if self.errors or draft.severity is None:
            return  # the Policy is not built anyway; do not build a Rule from bad parts
        self.rules.append(
            Rule(
                id=draft.id,
                policy_id=draft.id.rpartition(".")[0],
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
