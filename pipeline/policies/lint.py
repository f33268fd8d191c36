"""`quoteguard policy lint`: every load problem, plus what only the whole set shows.

Loading stops at errors that make a set unusable. Lint also reports what a set that loads
can still get wrong: a reference to a rule that does not exist (`see VIOLENCE.9`), one
example listed under two rules, and a set longer than a model follows well.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.policies.diagnostics import Diagnostic
from pipeline.policies.loader import parse_paths, policy_set
from pipeline.policies.model import NUMBERED_RULE_ID, TIER_RULE_ID, PolicySet
from pipeline.policies.parsed import ParsedFile

#: Past this many tokens of instructions and policies, models follow the rules less
#: reliably (long-context evaluations show instruction-following falling off with prompt
#: length). A rule of thumb, not a measurement: `--max-tokens` sets another.
DEFAULT_MAX_TOKENS = 8000

#: A rule id in running text: not part of a longer word, a path or a version number.
_REFERENCE = re.compile(rf"(?<![\w.])({NUMBERED_RULE_ID}|{TIER_RULE_ID})(?![\w])(?!\.\d)")


@dataclass(frozen=True)
class LintResult:
    diagnostics: list[Diagnostic]
    tokens: int | None  # the estimate, when the set loaded

    @property
    def errors(self) -> int:
        return sum(d.level == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return sum(d.level == "warning" for d in self.diagnostics)


def lint(
    paths: list[Path],
    *,
    render_prompt: Callable[[PolicySet], str],
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> LintResult:
    """Every problem of the set the paths make together, in file and line order.

    `render_prompt` is the prompt stage's system message builder: the length warning
    measures what the model will read. It is passed in, not imported, because the prompt
    stage sits above the policies it renders.
    """
    parsed, diagnostics = parse_paths(paths)
    diagnostics.extend(_references(parsed))
    diagnostics.extend(_shared_examples(parsed))
    diagnostics.extend(_hidden_characters(parsed))
    tokens = None
    if parsed and not any(d.level == "error" for d in diagnostics):
        tokens = estimate_tokens(render_prompt(policy_set(parsed)))
        if tokens > max_tokens:
            diagnostics.append(
                Diagnostic(
                    paths[0],
                    1,
                    1,
                    "PW701",
                    f"the policy set is about {tokens} tokens with the instructions, over "
                    f"{max_tokens}: models follow long rule sets less reliably; split it or "
                    f"trim examples ({ESTIMATE_METHOD})",
                )
            )
    key = lambda d: (str(d.path), d.line, d.col, d.code)  # noqa: E731 - one use
    return LintResult(sorted(diagnostics, key=key), tokens)


ESTIMATE_METHOD = (
    "estimated as one token per 4 ASCII characters and one per other character, which "
    "over-counts CJK and Arabic a little on purpose"
)


def estimate_tokens(text: str) -> int:
    """Tokens a BPE tokenizer makes of `text`, roughly; no tokenizer is bundled."""
    ascii_chars = sum(1 for char in text if ord(char) < 128)
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)


def _references(parsed: list[ParsedFile]) -> Iterator[Diagnostic]:
    """Rule ids in text that no file defines, with line and column."""
    defined = {rule.id for one in parsed if one.policy for rule in one.policy.rules}
    for one in parsed:  # a file with errors still defines the ids of its rule headings
        defined.update(_ids(one.lines[n - 1] for n in one.heading_lines))
    for one in parsed:
        # A rule line that could not be read is reported already (PE201); the id on it is
        # its own, not a reference.
        unread = {d.line for d in one.diagnostics if d.code == "PE201"}
        for number, line in _text_lines(one):
            if number in unread:
                continue
            for match in _REFERENCE.finditer(line):
                if match[1] not in defined:
                    yield Diagnostic(
                        one.path,
                        number,
                        match.start(1) + 1,
                        "PE601",
                        f"{match[1]} is referred to but no rule has that id",
                    )


def _ids(lines: Iterable[str]) -> set[str]:
    return {match[1] for line in lines for match in _REFERENCE.finditer(line)}


def _text_lines(one: ParsedFile) -> Iterator[tuple[int, str]]:
    """The lines a reference can be on: not the header, not writers' comments."""
    in_comment = False
    in_header = bool(one.lines) and one.lines[0].rstrip() == "---"
    for number, line in enumerate(one.lines, start=1):
        stripped = line.strip()
        if in_header:
            in_header = number == 1 or stripped not in ("---", "...")
            continue
        if stripped.startswith("<!--") or in_comment:
            in_comment = "-->" not in stripped
            continue
        yield number, line


def _shared_examples(parsed: list[ParsedFile]) -> Iterator[Diagnostic]:
    """An example under two rules: the model cannot learn where either line falls."""
    first: dict[str, tuple[str, ParsedFile, int]] = {}
    for one in parsed:
        for owner, examples in one.example_lines.items():
            for example, line in examples.items():
                key = _normal(example)
                seen = first.setdefault(key, (owner, one, line))
                # One rule id in two files is PE202 already; its examples are not news.
                if seen[0] != owner or (owner == "allowed" and seen[1] is not one):
                    yield Diagnostic(
                        one.path,
                        line,
                        1,
                        "PW401",
                        f"the example '{example}' of {_name(owner)} is also listed under "
                        f"{_name(seen[0])} ({seen[1].path.name}:{seen[2]}); keep each example "
                        "under one rule",
                    )


#: Characters that make a file read differently from what it says (Trojan Source,
#: CVE-2021-42574): control characters other than tab, line and paragraph separators, and
#: the bidi embeddings, overrides and isolates. Marks such as U+200C and U+200F, which
#: Arabic and Persian text needs, are fine.
_HIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _hidden_characters(parsed: list[ParsedFile]) -> Iterator[Diagnostic]:
    """Each line with such a character, at the first one."""
    for one in parsed:
        for number, line in enumerate(one.lines, start=1):
            if match := _HIDDEN.search(line):
                char = match[0]
                name = unicodedata.name(char, "a control character")
                yield Diagnostic(
                    one.path,
                    number,
                    match.start() + 1,
                    "PW801",
                    f"U+{ord(char):04X} ({name}): the model reads what a reviewer does not "
                    "see; remove it, or describe the character in words",
                )


def _normal(example: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", example).casefold().split())


def _name(owner: str) -> str:
    return "the allowed examples" if owner == "allowed" else f"rule {owner}"
