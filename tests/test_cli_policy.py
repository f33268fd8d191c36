"""`quoteguard policy lint | show | test | diff` as a policy writer runs them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.policies import default_policies_dir, load_policies

ROOT = Path(__file__).parents[1]
FIXTURES = Path(__file__).parent / "fixtures" / "policies"
PROSE = FIXTURES / "prose"
BAD = Path(__file__).parent / "fixtures" / "policies_bad"
DIAGNOSTIC = re.compile(
    r"^(?P<path>.+):(?P<line>\d+):(?P<col>\d+): (?P<code>P[EW]\d{3}) (?P<msg>.+)$"
)


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def quoteguard(*args: str) -> Ran:
    """Runs the CLI in this process (a fresh one costs seconds of imports per command)."""
    from pipeline.cli import app  # noqa: PLC0415 - the CLI app is only needed here

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return Ran(result.exit_code, result.stdout, result.stderr)


def quoteguard_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the installed CLI in a fresh process, as a user would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTEGUARD_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        cwd=cwd,
        timeout=180,
        check=False,
    )


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(default_policies_dir(), folder)
    return folder


class TestLint:
    def test_errors_one_per_line_and_exit_1(self) -> None:
        """Each problem is one `path:line:col: CODE message` line; errors exit 1."""
        done = quoteguard("policy", "lint", str(BAD / "several_problems.md"))
        assert done.returncode == 1
        lines = done.stdout.splitlines()
        assert all(DIAGNOSTIC.match(line) for line in lines), lines
        found = [(m["line"], m["code"]) for m in map(DIAGNOSTIC.match, lines) if m]
        assert found == [("5", "PE301"), ("12", "PE401"), ("13", "PE302"), ("17", "PE104")]
        assert "4 errors, 0 warnings" in done.stderr

    def test_warnings_pass_unless_strict(self) -> None:
        """A warning alone exits 0; --strict makes it fail."""
        done = quoteguard("policy", "lint", str(default_policies_dir()), "--max-tokens", "100")
        assert (done.returncode, DIAGNOSTIC.match(done.stdout.strip())["code"]) == (0, "PW701")  # type: ignore[index]
        strict = quoteguard(
            "policy", "lint", str(default_policies_dir()), "--max-tokens", "100", "--strict"
        )
        assert strict.returncode == 1

    def test_json(self) -> None:
        """--format json lists each diagnostic with its place, code, level and message."""
        done = quoteguard("policy", "lint", str(BAD / "invalid_severity.md"), "--format", "json")
        doc = json.loads(done.stdout)
        assert done.returncode == 1
        assert doc["errors"] == 1
        (diagnostic,) = doc["diagnostics"]
        assert {k: diagnostic[k] for k in ("line", "col", "code", "level")} == {
            "line": 6,
            "col": 1,
            "code": "PE302",
            "level": "error",
        }
        assert doc["codes"]["PE302"] == "an unknown severity"

    def test_clean_set(self) -> None:
        """The bundled set lints clean and states its size in tokens."""
        done = quoteguard("policy", "lint", str(default_policies_dir()))
        assert (done.returncode, done.stdout) == (0, "")
        assert re.search(r"0 errors, 0 warnings; the set is about \d+ prompt tokens", done.stderr)

    def test_pre_commit_hook(self) -> None:
        """The shipped pre-commit hook runs `policy lint` on the whole policy folder."""
        (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
        assert hook["pass_filenames"] is False  # the set is linted whole: cross-file checks
        command = shlex.split(hook["entry"]) + hook["args"]
        assert command[0] == "quoteguard"
        done = quoteguard_process(*command[1:], cwd=ROOT)
        assert done.returncode == 0, done.stdout + done.stderr


class TestShow:
    def test_json_of_the_prose_policy(self) -> None:
        """--json lists every rule with id, title, severity, examples and allowed examples."""
        done = quoteguard("policy", "show", str(PROSE), "--json")
        assert done.returncode == 0, done.stderr
        doc = json.loads(done.stdout)
        assert doc["version"] == load_policies(PROSE).version
        (policy,) = doc["policies"]
        rules = {rule["id"]: rule for rule in policy["rules"]}
        assert {k: rules["GH3.a"][k] for k in ("title", "severity", "examples")} == {
            "title": "Dehumanising insult",
            "severity": "high",
            "examples": ["Women are scum.", "女人都是渣滓。", "النساء حثالة."],
        }
        assert all(rule["allowed_examples"] == [] for rule in rules.values())
        assert "أنا مرأة." in policy["allowed_examples"]

    def test_json_of_a_markdown_rule(self) -> None:
        """A Markdown rule's near misses are its `allowed_examples` in --json."""
        done = quoteguard("policy", "show", str(default_policies_dir()), "--json")
        rules = {r["id"]: r for p in json.loads(done.stdout)["policies"] for r in p["rules"]}
        spam = next(rule for rule in load_policies().rules if rule.id == "SPAM.1")
        assert rules["SPAM.1"]["examples"] == list(spam.violating)
        assert rules["SPAM.1"]["allowed_examples"] == list(spam.non_violating) != []

    def test_text(self) -> None:
        """The text view names the version, each rule with its severity and example counts."""
        done = quoteguard("policy", "show", str(default_policies_dir()))
        policies = load_policies()
        assert done.stdout.startswith(f"policy set {policies.version}: 7 policies, ")
        assert "  HARASSMENT.1  Insults aimed at a person  [medium]" in done.stdout
        assert "    violates (4):" in done.stdout

    def test_hostile_text_is_escaped(self, tmp_path: Path) -> None:
        """An example carrying terminal escapes is printed escaped, never as control codes."""
        path = tmp_path / "spam.md"
        path.write_text(
            "# Spam\n\nAds.\n\n## SPAM.1 Ads\nSeverity: low\n\nNo ads.\n\n### Violates\n"
            "- BUY \x1b[2J\u202eNOW\n",
            encoding="utf-8",
        )
        done = quoteguard("policy", "show", str(path))
        assert "\x1b" not in done.stdout
        assert "\u202e" not in done.stdout
        assert "BUY \\u001b[2J\\u202eNOW" in done.stdout

    def test_hostile_text_is_escaped_in_json(self, tmp_path: Path) -> None:
        """--json escapes bidi and C1 controls too, and a JSON reader gets the text back."""
        example = "BUY \x1b[2J\u202eNOW \x9b31m 买"
        path = tmp_path / "spam.md"
        path.write_text(
            "# Spam\n\nAds.\n\n## SPAM.1 Ads\nSeverity: low\n\nNo ads.\n\n### Violates\n"
            f"- {example}\n",
            encoding="utf-8",
        )
        shown = quoteguard("policy", "show", str(path), "--json")
        (path.parent / "broken.md").write_text(f"# Broken\n\nX.\n\n## {example}\n", "utf-8")
        linted = quoteguard("policy", "lint", str(tmp_path), "--format", "json")
        for out in (shown.stdout, linted.stdout):
            assert not {"\x1b", "\u202e", "\x9b"} & set(out)
            assert "买" in out
        assert json.loads(shown.stdout)["policies"][0]["rules"][0]["examples"] == [example]
        messages = [d["message"] for d in json.loads(linted.stdout)["diagnostics"]]
        assert any(example in message for message in messages)

    def test_broken_set(self) -> None:
        """A set that does not load exits 1 with every problem and where it is."""
        done = quoteguard("policy", "show", str(BAD / "missing_severity.md"))
        assert done.returncode == 1
        assert "missing_severity.md:5: rule HARASSMENT.1 has no severity" in done.stderr


class TestRunExamples:
    def test_bundled_set_on_the_simulator(self, tmp_path: Path) -> None:
        """Every example is a test case with a line; rules are summed; JUnit XML agrees."""
        junit = tmp_path / "junit.xml"
        done = quoteguard_process(
            "policy", "test", str(default_policies_dir()), "--sim", "--junit-xml", str(junit)
        )
        policies = load_policies()
        examples = sum(len(r.violating) + len(r.non_violating) for r in policies.rules)
        results = [line for line in done.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
        failed = sum(line.startswith("FAIL") for line in results)
        assert len(results) == examples
        assert done.returncode == (1 if failed else 0)
        assert f"{examples - failed} passed, {failed} failed" in done.stdout
        for rule in policies.rules:
            assert re.search(rf"^{re.escape(rule.id)}: \d+/\d+ passed", done.stdout, re.M)
        root = ET.parse(junit).getroot()  # noqa: S314 - our own report, just written
        assert len(root.findall(".//testcase")) == examples
        assert len(root.findall(".//failure")) == failed
        assert {suite.get("name") for suite in root} == {rule.id for rule in policies.rules}

    def test_prose_policy_on_the_simulator(self) -> None:
        """A prose policy runs too; allowed-tier examples are cases of the policy."""
        done = quoteguard_process("policy", "test", str(PROSE), "--sim")
        assert re.search(r"^(PASS|FAIL)  GROUP_HATE/allowed/7  'انا", done.stdout, re.M)
        assert re.search(r"^PASS  GH4.a/violates/2  '我想杀死所有女人。'$", done.stdout, re.M)
        assert "GROUP_HATE (allowed): " in done.stdout

    def test_only_some_rules(self) -> None:
        """--only runs the examples of the rules and policies named, and no others."""
        done = quoteguard_process(
            "policy",
            "test",
            str(default_policies_dir()),
            "--sim",
            "--only",
            "SPAM.2",
            "--only",
            "HATE",
        )
        groups = re.findall(r"^(\S+): \d+/\d+ passed", done.stdout, re.M)
        assert groups == ["HATE.1", "HATE.2", "HATE.3", "HATE.4", "SPAM.2"]
        unknown = quoteguard("policy", "test", str(PROSE), "--sim", "--only", "GH9.z")
        assert unknown.returncode == 2

    def test_junit_xml_with_nowhere_to_go(self, tmp_path: Path) -> None:
        """A --junit-xml path in a missing folder is a usage error before any example runs."""
        junit = tmp_path / "missing" / "junit.xml"
        done = quoteguard(
            "policy", "test", str(PROSE), "--sim", "--only", "GH2.a", "--junit-xml", str(junit)
        )
        assert done.returncode == 2
        assert "--junit-xml" in done.stderr
        assert "PASS" not in done.stdout
        assert "FAIL" not in done.stdout

    def test_needs_an_endpoint(self) -> None:
        """Without --sim, a key or --base-url it is a usage error, not a network call."""
        done = quoteguard_process("policy", "test", str(PROSE))
        assert done.returncode == 2
        assert "no API key" in done.stderr


class TestDiff:
    def test_added_removed_changed(self, policy_copy: Path) -> None:
        """Rules and examples added, removed and changed are listed, with both versions."""
        spam = policy_copy / "spam.md"
        text = spam.read_text(encoding="utf-8")
        text = text.split("## SPAM.4")[0]  # SPAM.4 removed
        text = text.replace(
            "## SPAM.1 Commercial spam\nSeverity: low",
            "## SPAM.1 Commercial spam\nSeverity: medium",
        )
        text = text.replace("- BUY NOW!!!", "- FREE FOLLOWERS today only!!!\n- BUY NOW!!!")
        text = text.replace("- Does anyone know where to buy cheap running shoes?\n", "")
        text += "## SPAM.5 Link farms\nSeverity: low\n\nNo link farms.\n\n### Violates\n"
        text += "- Visit my 40 sites.\n"
        spam.write_text(text, encoding="utf-8")
        done = quoteguard("policy", "diff", str(default_policies_dir()), str(policy_copy))
        out = done.stdout
        assert done.returncode == 0, done.stderr
        old, new = load_policies().version, load_policies(policy_copy).version
        assert out.startswith(f"policy set {old} -> {new}\n")
        assert "+ SPAM.5  Link farms  [low]" in out
        assert "- SPAM.4  Fake reviews and engagement  [low]" in out
        assert "~ SPAM.1\n    severity: 'low' -> 'medium'\n" in out
        assert "    + violating example: FREE FOLLOWERS today only!!!" in out
        removed = "    - non-violating example: Does anyone know where to buy cheap running shoes?"
        assert removed in out

    def test_cited_rules_that_are_gone(self, policy_copy: Path, tmp_path: Path) -> None:
        """Recorded Decisions citing a removed or never-existing rule are named; bad lines too."""
        spam = policy_copy / "spam.md"
        spam.write_text(spam.read_text(encoding="utf-8").split("## SPAM.4")[0], encoding="utf-8")
        decisions = tmp_path / "decisions.jsonl"
        cite = lambda *ids: json.dumps({"findings": [{"rule_id": i} for i in ids]})  # noqa: E731
        decisions.write_text(
            "\n".join(
                [cite("SPAM.4", "HATE.1"), cite("SPAM.4"), "{not json", cite("HATE_SPEECH.1")]
            )
            + "\n",
            encoding="utf-8",
        )
        done = quoteguard(
            "policy",
            "diff",
            str(default_policies_dir()),
            str(policy_copy),
            "--decisions",
            str(decisions),
        )
        assert "3 decisions read" in done.stdout
        assert "  SPAM.4: cited by 2 findings, removed in the new set" in done.stdout
        assert "  HATE_SPEECH.1: cited by 1 finding, in neither set" in done.stdout
        assert "HATE.1:" not in done.stdout
        assert f"{decisions}:3: not a Decision" in done.stderr

    def test_hostile_decisions_lines(self, tmp_path: Path) -> None:
        """Deeply nested, wrongly shaped and non-UTF-8 lines are each named; the rest is read."""
        decisions = tmp_path / "decisions.jsonl"
        decisions.write_bytes(
            b"[" * 100_000
            + b"]" * 100_000
            + b"\n"
            + b'{"findings": {"rule_id": "SPAM.1"}}\n'
            + b"\xff\xfe{}\n"
            + b'{"findings": [{"rule_id": "EVIL\\u001b[31m.1"}]}\n'
        )
        done = quoteguard(
            "policy",
            "diff",
            str(default_policies_dir()),
            str(default_policies_dir()),
            "--decisions",
            str(decisions),
        )
        assert done.returncode == 0
        problems = done.stderr.splitlines()
        assert [line.split(": not a Decision")[0] for line in problems] == [
            f"{decisions}:{n}" for n in (1, 2, 3)
        ]
        assert "findings: Input should be a valid array" in problems[1]
        assert "1 decision read" in done.stdout
        assert "EVIL\\u001b[31m.1: cited by 1 finding, in neither set" in done.stdout

    def test_no_change(self) -> None:
        """The same set twice: the versions match and nothing is listed."""
        done = quoteguard(
            "policy", "diff", str(default_policies_dir()), str(default_policies_dir())
        )
        assert done.stdout.splitlines()[1] == "no change to what the model reads"
        assert len(done.stdout.splitlines()) == 2


class TestReadmeWalkthrough:
    def test_add_lint_fix_diff(self, policy_copy: Path) -> None:
        """The README's policy-writer walk-through gives the output the README shows."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        section = readme.split("### For policy writers")[1]
        rule = section.split("```markdown\n")[1].split("```")[0]
        spam = policy_copy / "spam.md"
        spam.write_text(spam.read_text(encoding="utf-8") + "\n" + rule, encoding="utf-8")

        linted = quoteguard("policy", "lint", str(policy_copy))
        shown = linted.stdout.strip().replace(str(policy_copy), "policies")
        assert f"$ quoteguard policy lint policies/\n{shown}\n1 error, 0 warnings\n" in section
        assert linted.returncode == 1

        spam.write_text(
            spam.read_text(encoding="utf-8").replace(", and SPAM.7 for link shorteners", ""),
            encoding="utf-8",
        )
        clean = quoteguard("policy", "lint", str(policy_copy))
        assert clean.returncode == 0
        assert " ".join(clean.stderr.split()) in " ".join(section.split())

        changed = quoteguard("policy", "diff", str(default_policies_dir()), str(policy_copy))
        assert changed.stdout in section
