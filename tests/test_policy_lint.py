"""`pipeline.policies.lint`: every diagnostic code, triggered by a file, at its line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.policies import loader
from pipeline.policies.diagnostics import CODES, Diagnostic
from pipeline.policies.header import Header
from pipeline.policies.lint import LintResult, estimate_tokens
from pipeline.policies.lint import lint as lint_with
from pipeline.policies.model import Rule
from pipeline.policies.parsed import ParsedFile
from pipeline.prompt import system_message

BAD = Path(__file__).parent / "fixtures" / "policies_bad"
FIXTURES = Path(__file__).parent / "fixtures" / "policies"

#: A valid Markdown policy; cases below change one part of it.
GOOD = """\
# Harassment

Content that targets a specific person with abuse.

## HARASSMENT.1 Insults
Severity: medium

Content must not insult an identifiable person.

### Violates
- You are a worthless idiot.

### Does not violate
- That argument is idiotic.
"""

#: A valid prose policy with Arabic and Mandarin examples; cases change one line of it.
PROSE = """\
---
id: GROUP_HATE
title: Group hate
format: prose
---
Attacks on people for who they are.

✅ Allowed (GH0 – Not hate)
- GH0.a Identity – “أنا مرأة.”

🚫 Likely Hate (GH2 – Medium)
Hostility at a group.
- GH2.a Stated hatred – “我恨女人。”, “انا بكره النساء.”
"""

#: (code, files to write {name: text}, line, a phrase of the message). One line changed
#: from the valid files above makes each problem, so the line number is known.
CASES: list[tuple[str, dict[str, str], int, str]] = [
    ("PE101", {"a.md": GOOD.replace("# Harassment\n", "")}, 2, "must start with the policy"),
    ("PE101", {"a.md": GOOD + "\n# Another\n"}, 16, "a second '# Title'"),
    (
        "PE102",
        {"a.md": GOOD.replace("Content that targets a specific person with abuse.\n", "")},
        1,
        "no description",
    ),
    ("PE104", {"a.md": GOOD.replace("### Violates", "#### Violates")}, 10, "below ###"),
    ("PE104", {"a.md": GOOD.replace("### Violates", "### Borderline")}, 10, "unknown section"),
    ("PE201", {"a.md": GOOD.replace("HARASSMENT.1", "HARASSMENT.01")}, 5, "rule id POLICY.N"),
    (
        "PE201",
        {"p.md": PROSE.replace("- GH2.a Stated hatred – ", "- GH2.a Stated hatred ")},
        13,
        "a rule line is a rule id",
    ),
    ("PE202", {"a.md": GOOD + GOOD.split("\n", 3)[3]}, 16, "duplicate rule id HARASSMENT.1"),
    (
        "PE202",
        {"a.md": GOOD, "b.md": GOOD.replace("# Harassment", "# Harassment again")},
        5,
        "duplicate rule id HARASSMENT.1: also defined at a.md:5",
    ),
    ("PE203", {"p.md": PROSE.replace("- GH2.a", "- GH3.a")}, 13, "listed under tier GH2"),
    ("PE203", {"a.md": "---\nid: ABUSE\n---\n" + GOOD}, 2, "header says id ABUSE"),
    ("PE204", {"a.md": GOOD.replace("HARASSMENT.1 Insults", "HARASSMENT.1")}, 5, "no title"),
    (
        "PE205",
        {"a.md": GOOD.replace("Content must not insult an identifiable person.\n", "")},
        5,
        "no rule text",
    ),
    ("PE301", {"a.md": GOOD.replace("Severity: medium\n", "")}, 5, "has no severity"),
    ("PE301", {"p.md": PROSE.replace("(GH2 – Medium)", "(GH2 – Likely)")}, 11, "no severity"),
    ("PE302", {"a.md": GOOD.replace("medium", "severe")}, 6, "severity 'severe'"),
    (
        "PE303",
        {"a.md": GOOD.replace("Severity: medium", "Severity: medium\nSeverity: high")},
        7,
        "severity twice",
    ),
    (
        "PE401",
        {"a.md": GOOD.replace("### Violates\n- You are a worthless idiot.\n", "")},
        5,
        "no violating example",
    ),
    ("PE401", {"p.md": PROSE.replace("- GH0.a Identity – “أنا مرأة.”", "")}, 8, "no rule lines"),
    ("PE402", {"a.md": GOOD.replace("- You are", "You are")}, 11, "as list items"),
    ("PE402", {"p.md": PROSE.replace("“我恨女人。”", "“”")}, 13, "is empty"),
    (
        "PE403",
        {"a.md": GOOD.replace("- That argument is idiotic.", "- You are a worthless idiot.")},
        5,
        "as violating and not",
    ),
    ("PE501", {"p.md": PROSE.replace("format: prose", "format: prose\nowner: t&s")}, 5, "owner"),
    ("PE502", {"p.md": PROSE.replace("format: prose", "format: yaml")}, 4, "'format'"),
    ("PE502", {"p.md": PROSE.replace("title: Group hate\n", "")}, 1, "must give its 'title'"),
    ("PE502", {"p.md": PROSE.replace("---\nAttacks", "Attacks")}, 1, "never closed"),
    (
        "PE601",
        {"a.md": GOOD.replace("identifiable person.", "identifiable person (see VIOLENCE.9).")},
        8,
        "VIOLENCE.9 is referred to",
    ),
    (
        "PE601",
        {"p.md": PROSE.replace("Hostility at", "Worse than GH3.b: hostility at")},
        12,
        "GH3.b",
    ),
    (
        "PW401",
        {"a.md": GOOD, "b.md": GOOD.replace("HARASSMENT", "ABUSE").split("### Does not")[0]},
        11,
        "also listed under rule HARASSMENT.1 (a.md:11)",
    ),
    (
        "PW401",
        {"p.md": PROSE + "- GH2.b Repeated – “أنا مرأة.”\n"},
        14,
        "also listed under the allowed examples (p.md:9)",
    ),
]


def lint(paths: list[Path], max_tokens: int | None = None) -> LintResult:
    """The linter as the CLI runs it: the length warning measures the real system message."""
    if max_tokens is None:
        return lint_with(paths, render_prompt=system_message)
    return lint_with(paths, render_prompt=system_message, max_tokens=max_tokens)


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def only(found: list[Diagnostic], code: str) -> Diagnostic:
    matching = [d for d in found if d.code == code]
    assert len(matching) == 1, [str(d) for d in found]
    return matching[0]


class TestCodes:
    @pytest.mark.parametrize(("code", "files", "line", "phrase"), CASES)
    def test_code_at_its_line(
        self, tmp_path: Path, code: str, files: dict[str, str], line: int, phrase: str
    ) -> None:
        """Each kind of problem is reported once, with its code, at the line it is on."""
        found = only(lint([write(tmp_path, files)]).diagnostics, code)
        assert found.line == line
        assert phrase in found.message
        assert str(found).startswith(f"{found.path}:{line}:{found.col}: {code} ")

    @pytest.mark.parametrize(
        ("name", "code", "line"),
        [
            ("not_utf8.md", "PE001", 5),
            ("missing_title.md", "PE101", 1),
            ("no_rules.md", "PE103", 1),
        ],
    )
    def test_bundled_bad_files(self, name: str, code: str, line: int) -> None:
        """The loader's broken fixture files get their codes too."""
        assert only(lint([BAD / name]).diagnostics, code).line == line

    def test_missing_path(self, tmp_path: Path) -> None:
        """A path with no policy file is PE002, not a crash."""
        assert only(lint([tmp_path / "nowhere"]).diagnostics, "PE002").line == 1

    def test_reference_column(self, tmp_path: Path) -> None:
        """A broken reference points at the column where the id starts."""
        text = GOOD.replace("identifiable person.", "identifiable person (see VIOLENCE.9).")
        found = only(lint([write(tmp_path, {"a.md": text})]).diagnostics, "PE601")
        assert found.col == text.splitlines()[7].index("VIOLENCE.9") + 1

    def test_references_in_comments_are_notes(self, tmp_path: Path) -> None:
        """A retired id named in a writers' comment is history, not a reference."""
        text = GOOD.replace(
            "## HARASSMENT.1", "<!-- HARASSMENT.7 was retired -->\n\n## HARASSMENT.1"
        )
        assert lint([write(tmp_path, {"a.md": text})]).diagnostics == []

    def test_long_set(self, tmp_path: Path) -> None:
        """A set over the token budget is a warning that states the estimate and its method."""
        result = lint([write(tmp_path, {"a.md": GOOD})], max_tokens=100)
        found = only(result.diagnostics, "PW701")
        assert (found.line, found.level) == (1, "warning")
        assert f"about {result.tokens} tokens" in found.message
        assert "4 ASCII characters" in found.message
        assert lint([tmp_path], max_tokens=result.tokens or 0).diagnostics == []

    def test_parser_gap(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A policy the parser let through but the model refuses is PE000, naming the file."""

        def lax(path: Path, body: str, header: Header, lines: dict[str, int]) -> ParsedFile:
            Rule.model_validate({"id": "X.1"})  # what a parser bug would do
            raise AssertionError

        monkeypatch.setitem(loader.PARSERS, "markdown", lax)
        found = only(lint([write(tmp_path, {"a.md": GOOD})]).diagnostics, "PE000")
        assert (Path(found.path).name, found.line) == ("a.md", 1)

    def test_every_code_is_tested(self) -> None:
        """Each code in the table has a case in this file that triggers it."""
        here = Path(__file__).read_text(encoding="utf-8")
        assert [code for code in CODES if f'"{code}"' not in here] == []


class TestCleanSets:
    @pytest.mark.parametrize(
        "path",
        [
            loader.default_policies_dir(),
            FIXTURES / "prose",
            FIXTURES / "structured",
        ],
    )
    def test_no_problems(self, path: Path) -> None:
        """The bundled set and both fixtures lint clean (no errors, no warnings)."""
        result = lint([path])
        assert [str(d) for d in result.diagnostics] == []
        assert result.tokens is not None

    def test_errors_and_warnings_counted(self, tmp_path: Path) -> None:
        """An error and a warning are told apart by level, as CI needs them."""
        files = {
            "a.md": GOOD.replace("medium", "severe"),
            "p.md": PROSE + "- GH2.b Repeated – “أنا مرأة.”\n",
        }
        result = lint([write(tmp_path, files)])
        assert (result.errors, result.warnings) == (1, 1)


class TestHostileFiles:
    @pytest.mark.timeout(60)  # the old patterns took hours here; fail, do not hang CI
    def test_long_runs_of_spaces(self, tmp_path: Path) -> None:
        """A line with a long run of spaces is linted like any other line, not backtracked on."""
        spaces = " " * 100_000
        files = {
            "a.md": GOOD.replace("Severity: medium", f"Severity: medium{spaces}x"),
            "p.md": PROSE + f"- GH2.b Stated{spaces}hatred\n",
        }
        found = lint([write(tmp_path, files)]).diagnostics
        assert only(found, "PE302").line == 6
        unread = only(found, "PE201")
        assert (Path(unread.path).name, unread.line) == ("p.md", 14)

    @pytest.mark.parametrize(
        ("header", "line", "col", "phrase"),
        [
            ("id: !!python/object/apply:os.system [x]", 2, 5, "could not determine a constructor"),
            ("id: SPAM\ntitle: [unclosed", 3, 17, "expected ',' or ']'"),
            ("id: SPAM\n\ttitle: Spam", 3, 1, "found character '\\t'"),
        ],
    )
    def test_bad_yaml_header(
        self, tmp_path: Path, header: str, line: int, col: int, phrase: str
    ) -> None:
        """A header YAML cannot read is one PE502 line at the file's line, never run."""
        files = {"a.md": f"---\n{header}\n---\n{GOOD}"}
        found = only(lint([write(tmp_path, files)]).diagnostics, "PE502")
        assert (found.line, found.col) == (line, col)
        assert phrase in found.message
        assert "\n" not in found.message

    def test_a_file_copied(self, tmp_path: Path) -> None:
        """A policy file twice is one PE202 per rule, not a warning per example as well."""
        found = lint([write(tmp_path, {"a.md": GOOD, "b.md": GOOD})]).diagnostics
        assert sorted(d.code for d in found) == ["PE202", "PE203"]

    def test_header_never_closed(self, tmp_path: Path) -> None:
        """A header with no closing '---' is that one problem, not the body's follow-ons."""
        prose = PROSE.replace("format: prose\n---\n", "format: prose\n")
        found = lint([write(tmp_path, {"p.md": prose})]).diagnostics
        assert [(d.code, d.line) for d in found] == [("PE502", 1)]

    def test_a_file_named_twice(self, tmp_path: Path) -> None:
        """A file named on its own and through its folder is one file, not its own duplicate."""
        folder = write(tmp_path, {"a.md": GOOD})
        assert lint([folder, folder / "a.md"]).diagnostics == []

    @pytest.mark.parametrize(
        ("name", "text", "line"),
        [
            ("a.md", GOOD.replace("HARASSMENT.1 Insults", "HARASSMENT.1\u202e\x1b[31m Insults"), 5),
            ("p.md", PROSE + "- GH2.b Repeated “I hate women.”\n", 14),
        ],
    )
    def test_unreadable_rule_line_is_one_problem(
        self, tmp_path: Path, name: str, text: str, line: int
    ) -> None:
        """A rule line that cannot be read is PE201 alone, not also a reference to itself."""
        found = lint([write(tmp_path, {name: text})]).diagnostics
        assert [(d.code, d.line) for d in found if d.level == "error"] == [("PE201", line)]

    @pytest.mark.parametrize(
        ("written", "col", "name"),
        [
            ("idi\u202eot.", 26, "RIGHT-TO-LEFT OVERRIDE"),
            ("idiot.\x1b[8m", 29, "U+001B (a control character)"),
            ("idi\u2066ot.", 26, "LEFT-TO-RIGHT ISOLATE"),
        ],
    )
    def test_hidden_characters(self, tmp_path: Path, written: str, col: int, name: str) -> None:
        """Bidi overrides and control characters are PW801 at their column; the set loads."""
        text = GOOD.replace("idiot.", written, 1)
        found = lint([write(tmp_path, {"a.md": text})]).diagnostics
        assert [(d.code, d.line, d.col) for d in found] == [("PW801", 11, col)]
        assert name in found[0].message

    def test_script_marks_are_not_hidden(self, tmp_path: Path) -> None:
        """Zero-width non-joiner and right-to-left marks that real scripts need pass."""
        text = GOOD.replace("idiot.", "idiot. می\u200cخواهم \u200fانا", 1)
        assert lint([write(tmp_path, {"a.md": text})]).diagnostics == []

    def test_line_breaks_only_at_newlines(self, tmp_path: Path) -> None:
        """A form feed or U+2028 inside an example neither shifts later line numbers nor
        becomes a line break, with a header or without."""
        odd = GOOD.replace("You are a worthless idiot.", "You are a\u2028worthless\x0cidiot.")
        headed = "---\nid: HARASSMENT\n---\n" + odd
        examples = [
            loader.load_policy_file(write(tmp_path, {name: text}) / name).rules[0].violating
            for name, text in (("a.md", odd), ("b.md", headed))
        ]
        assert examples[0] == examples[1]
        assert "\u2028" in examples[0][0]
        for one in ("a.md", "b.md"):
            (tmp_path / one).unlink()
        prose = PROSE.replace("Hostility at a group.", "Hostility\u2028at a\x0cgroup.")
        files = {
            "c.md": headed.replace("medium", "severe"),
            "p.md": prose + "- GH2.b Repeated “I hate women.”\n",
        }
        found = lint([write(tmp_path, files)]).diagnostics
        errors = [d for d in found if d.level == "error"]
        assert [(Path(d.path).name, d.code, d.line) for d in errors] == [
            ("c.md", "PE302", 9),
            ("p.md", "PE201", 14),
        ]

    def test_tab_indented_examples(self, tmp_path: Path) -> None:
        """Examples indented by a tab (a code block in Markdown) are PE402 saying so."""
        text = GOOD.replace("- You are a worthless idiot.", "\t- You are a worthless idiot.")
        found = only(lint([write(tmp_path, {"a.md": text})]).diagnostics, "PE402")
        assert found.line == 11
        assert "indented by a tab" in found.message

    @pytest.mark.timeout(60)  # the read of a FIFO blocked for ever
    def test_a_fifo_and_a_folder_named_md(self, tmp_path: Path) -> None:
        """A FIFO or a folder named *.md beside the policies is PE001, and the rest is read."""
        os.mkfifo(tmp_path / "pipe.md")
        (tmp_path / "folder.md").mkdir()
        found = lint([write(tmp_path, {"a.md": GOOD})]).diagnostics
        assert sorted((Path(d.path).name, d.code) for d in found) == [
            ("folder.md", "PE001"),
            ("pipe.md", "PE001"),
        ]
        assert all("not a regular file" in d.message for d in found)


class TestTokenEstimate:
    @pytest.mark.parametrize(
        ("text", "tokens"),
        [("", 0), ("abcd", 1), ("abcde", 2), ("我恨女人", 4), ("hi 我", 2)],
    )
    def test_estimate(self, text: str, tokens: int) -> None:
        """Four ASCII characters make a token; any other character makes one."""
        assert estimate_tokens(text) == tokens
