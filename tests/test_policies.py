"""Policy files, their loader and the PolicySet the rest of the pipeline reads."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import PolicyError, PolicyErrors
from pipeline.policies import (
    Policy,
    PolicySet,
    Rule,
    default_policies_dir,
    load_policies,
    load_policy_file,
)
from pipeline.prompt import render_policies, system_message

BAD = Path(__file__).parent / "fixtures" / "policies_bad"

POLICY_IDS = ["HARASSMENT", "HATE", "PRIVATE_INFO", "SELF_HARM", "SEXUAL", "SPAM", "VIOLENCE"]

#: A small valid file; tests format `{heading}`, `{severity}` and `{examples}` into it.
TEMPLATE = """\
# Harassment

Content that targets a specific person with abuse.

## {heading}
{severity}

Content must not insult an identifiable person.

### Violates
{examples}
"""


def write_policy(
    tmp_path: Path,
    heading: str = "HARASSMENT.1 Insults",
    severity: str = "Severity: medium",
    examples: str = "- You are a worthless idiot.",
) -> Path:
    path = tmp_path / "harassment.md"
    path.write_text(TEMPLATE.format(heading=heading, severity=severity, examples=examples))
    return path


@pytest.fixture(scope="module")
def policies() -> PolicySet:
    return load_policies()


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    """A writable copy of the default set."""
    return Path(shutil.copytree(default_policies_dir(), tmp_path / "policies"))


class TestDefaultSet:
    def test_loads_every_policy(self, policies: PolicySet) -> None:
        """The shipped folder loads: seven policies in file-name order."""
        assert [policy.id for policy in policies.policies] == POLICY_IDS

    def test_readme_is_not_a_policy(self) -> None:
        """README.md sits beside the policies but is not loaded as one."""
        assert (default_policies_dir() / "README.md").is_file()
        assert {p.source.partition(":")[0] for p in load_policies().policies} == {
            f"{policy_id.lower()}.md" for policy_id in POLICY_IDS
        }

    @pytest.mark.parametrize(
        ("rule_id", "title", "severity"),
        [
            ("HARASSMENT.1", "Insults aimed at a person", "medium"),
            ("HARASSMENT.2", "Wishing harm on a person", "high"),
            ("HATE.1", "Dehumanising language about a protected group", "high"),
            ("VIOLENCE.1", "Threats of violence", "critical"),
            ("SELF_HARM.4", "Statements of intent to self-harm", "critical"),
            ("SEXUAL.3", "Intimate images shared without consent", "critical"),
            ("SPAM.1", "Commercial spam", "low"),
            ("PRIVATE_INFO.2", "Private contact details", "medium"),
        ],
    )
    def test_stable_ids(self, policies: PolicySet, rule_id: str, title: str, severity: str) -> None:
        """Rule ids that decisions and calibration data refer to keep their meaning."""
        rule = policies.rule(rule_id)
        assert rule is not None
        assert (rule.title, rule.severity) == (title, severity)

    def test_ids_unique_and_numbered_from_one(self, policies: PolicySet) -> None:
        """Each policy has 3-4 rules numbered 1..n under its own prefix."""
        ids = [rule.id for rule in policies.rules]
        assert len(ids) == len(set(ids))
        for policy in policies.policies:
            numbers = [rule.id for rule in policy.rules]
            assert numbers == [f"{policy.id}.{n}" for n in range(1, len(policy.rules) + 1)]
            assert 3 <= len(policy.rules) <= 4

    def test_example_counts(self, policies: PolicySet) -> None:
        """Every rule has 3-5 violating and 2-4 non-violating examples."""
        for rule in policies.rules:
            assert 3 <= len(rule.violating) <= 5, rule.id
            assert 2 <= len(rule.non_violating) <= 4, rule.id

    def test_examples_are_text_without_notes(self, policies: PolicySet) -> None:
        """Notes for humans are dropped: the model reads examples as content."""
        harassment = policies.rule("HARASSMENT.1")
        assert harassment is not None
        assert "That argument is idiotic." in harassment.non_violating
        for rule in policies.rules:
            for example in (*rule.violating, *rule.non_violating):
                assert not example.endswith(")"), (rule.id, example)
                assert "\n" not in example

    def test_examples_differ_between_rules(self, policies: PolicySet) -> None:
        """No example is listed twice, so none can teach two answers."""
        examples = [e for rule in policies.rules for e in (*rule.violating, *rule.non_violating)]
        assert len(examples) == len(set(examples))

    def test_no_real_contact_details(self, policies: PolicySet) -> None:
        """Phone numbers are fictional 555-01xx ones and domains are example.com."""
        text = "\n".join(
            e for rule in policies.rules for e in (*rule.violating, *rule.non_violating)
        )
        assert set(re.findall(r"\b\d{3}-\d{4}\b", text)) <= {
            f"555-{n:04d}" for n in range(100, 200)
        }
        domains = re.findall(r"[\w.-]+@([\w.-]+\w)|\b([\w-]+\.(?:com|net|org|io))\b", text)
        assert {d for pair in domains for d in pair if d} <= {"example.com"}

    def test_source_points_at_the_heading(self, policies: PolicySet) -> None:
        """A rule's `source` names the file and the line of its `##` heading."""
        for rule in policies.rules:
            name, _, line = rule.source.partition(":")
            lines = (default_policies_dir() / name).read_text().splitlines()
            assert lines[int(line) - 1].startswith(f"## {rule.id} ")


class TestVersion:
    def test_stable_across_loads(self, policies: PolicySet) -> None:
        """Two loads of the same files give equal, equally hashed sets and one version."""
        again = load_policies()
        assert again.version == policies.version
        assert again == policies
        assert hash(again) == hash(policies)
        assert re.fullmatch(r"[0-9a-f]{12}", policies.version)

    def test_cached_system_message(self, policies: PolicySet) -> None:
        """The PolicySet is a valid lru_cache key: one system message per version."""
        assert system_message(load_policies()) is system_message(policies)

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("Content must not insult, demean", "Content must never insult, demean"),
            ("Severity: medium", "Severity: high"),
            ("- Shut up, you pathetic moron", "- Shut up, you sad moron"),
            ("# Harassment", "# Harassment and bullying"),
        ],
    )
    def test_changes_with_content(
        self, policies: PolicySet, policy_copy: Path, old: str, new: str
    ) -> None:
        """What the model reads (text, severity, examples, titles) is in the version."""
        path = policy_copy / "harassment.md"
        source = path.read_text()
        assert old in source
        path.write_text(source.replace(old, new, 1))
        assert load_policies(policy_copy).version != policies.version

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            ("(criticism of an idea, not a person)", "(attacks the idea)"),
            ("# Harassment\n", "<!-- reviewed by the policy team -->\n\n# Harassment\n\n"),
            ("whether they are\naddressed directly", "whether they\nare addressed directly"),
        ],
    )
    def test_ignores_what_the_model_never_sees(
        self, policies: PolicySet, policy_copy: Path, old: str, new: str
    ) -> None:
        """Notes, comments, re-wrapping and moved line numbers leave the version alone."""
        path = policy_copy / "harassment.md"
        source = path.read_text()
        assert old in source
        path.write_text(source.replace(old, new, 1))
        reloaded = load_policies(policy_copy)
        assert reloaded.version == policies.version

    def test_ignores_the_folder(self, policies: PolicySet, policy_copy: Path) -> None:
        """Paths are not content: a moved folder keeps its version."""
        assert load_policies(policy_copy).version == policies.version

    def test_round_trips(self, policies: PolicySet) -> None:
        """A dumped set (as sent over a broker) validates back to the same set."""
        dumped = policies.model_dump(mode="json")
        assert dumped["version"] == policies.version
        assert PolicySet.model_validate(dumped) == policies


class TestErrors:
    @pytest.mark.parametrize(
        ("name", "line", "problem"),
        [
            ("missing_title.md", 1, "must start with the policy title"),
            ("empty.md", 1, "the file is empty"),
            ("bad_rule_id.md", 13, "'## Wishing harm on a person': a rule heading starts with"),
            ("lowercase_rule_id.md", 5, "rule id POLICY.N (upper-case letters"),
            ("duplicate_rule_id.md", 13, "duplicate rule id HARASSMENT.1: also defined at line 5"),
            ("mixed_prefix.md", 13, "rule HATE.2 has policy prefix HATE, but this file's"),
            ("missing_severity.md", 5, "HARASSMENT.1 has no severity"),
            ("invalid_severity.md", 6, "'severe'; use one of low, medium, high, critical"),
            ("empty_rule_text.md", 5, "HARASSMENT.1 has no rule text"),
            ("no_violating_example.md", 5, "HARASSMENT.1 has no violating example"),
            ("unknown_section.md", 13, "unknown section '### Borderline' in rule HARASSMENT.1"),
            ("examples_not_a_list.md", 11, "write examples as list items"),
            ("no_rules.md", 1, "the policy has no rules"),
            ("not_utf8.md", 5, "not UTF-8 (byte 0xe9"),
        ],
    )
    def test_bad_file(self, name: str, line: int, problem: str) -> None:
        """Each bad file fails with one error naming the file, the line and the problem."""
        with pytest.raises(PolicyError) as caught:
            load_policies(BAD / name)
        error = caught.value
        assert not isinstance(error, PolicyErrors)
        assert (Path(error.path).name, error.line) == (name, line)
        assert problem in error.message
        assert str(error).startswith(f"{BAD / name}:{line}: ")

    def test_every_problem_of_a_file(self) -> None:
        """All problems of a file are reported together, in line order."""
        with pytest.raises(PolicyErrors) as caught:
            load_policy_file(BAD / "several_problems.md")
        found = [(error.line, error.message.split(";")[0]) for error in caught.value.errors]
        assert found == [
            (
                5,
                "rule HARASSMENT.1 has no severity: add a line 'Severity: <level>' with one of "
                "low, medium, high, critical",
            ),
            (12, "rule HARASSMENT.2 has no violating example: add a '### Violates' list"),
            (13, "rule HARASSMENT.2 has severity 'extreme'"),
            (17, "unknown section '### Examples' in rule HARASSMENT.2"),
        ]
        assert "several_problems.md:17: unknown section" in str(caught.value)

    def test_duplicates_across_files(self) -> None:
        """A policy id in two files is an error that names both places."""
        folder = BAD / "duplicate_across_files"
        with pytest.raises(PolicyErrors) as caught:
            load_policies(folder)
        errors = [(Path(e.path).name, e.line, e.message) for e in caught.value.errors]
        assert errors[0][:2] == ("insults.md", 5)
        assert "policy id HARASSMENT is already used by harassment.md:1" in errors[0][2]
        assert errors[1] == (
            "insults.md",
            5,
            "duplicate rule id HARASSMENT.2: also defined at harassment.md:13",
        )

    def test_errors_of_all_files_together(self, policy_copy: Path) -> None:
        """A folder with two broken files reports both."""
        shutil.copy(BAD / "missing_severity.md", policy_copy / "zz_one.md")
        shutil.copy(BAD / "unknown_section.md", policy_copy / "zz_two.md")
        with pytest.raises(PolicyErrors) as caught:
            load_policies(policy_copy)
        names = {Path(error.path).name for error in caught.value.errors}
        assert {"zz_one.md", "zz_two.md"} <= names

    @pytest.mark.parametrize(
        ("make", "problem"),
        [
            (lambda tmp: tmp / "nowhere", "no such policy file or directory"),
            (lambda tmp: tmp, "no policy files"),
        ],
    )
    def test_bad_path(self, tmp_path: Path, make: Callable[[Path], Path], problem: str) -> None:
        """A missing path or a folder without policies is a PolicyError, not a crash."""
        (tmp_path / "README.md").write_text("# Not a policy\n")
        path = make(tmp_path)
        with pytest.raises(PolicyError, match=problem):
            load_policies(path)

    @pytest.mark.parametrize(
        ("kwargs", "problem"),
        [
            ({"heading": "HARASSMENT.01 Insults"}, "rule heading starts with a rule id"),
            ({"heading": "HARASSMENT.1"}, "has no title after its id"),
            ({"severity": "Severity: medium\nSeverity: high"}, "gives its severity twice"),
            ({"examples": "- You idiot.\n  - nested"}, "must be one paragraph of text"),
            ({"examples": "-\n- You idiot."}, "is empty"),
        ],
    )
    def test_more_mistakes(self, tmp_path: Path, kwargs: dict[str, str], problem: str) -> None:
        """Less common mistakes are named too."""
        with pytest.raises(PolicyError, match=problem):
            load_policy_file(write_policy(tmp_path, **kwargs))


class TestParsing:
    @pytest.mark.parametrize(
        "heading",
        [
            "HARASSMENT.1 Insults aimed at a person",
            "HARASSMENT.1: Insults aimed at a person",
            "HARASSMENT.1 - Insults aimed at a person",
            "HARASSMENT.1 — Insults aimed at a person",
            "**HARASSMENT.1** Insults aimed at a person",
        ],
    )
    def test_heading_forms(self, tmp_path: Path, heading: str) -> None:
        """A colon or a dash after the id is allowed and is not part of the title."""
        rule = load_policy_file(write_policy(tmp_path, heading=heading)).rules[0]
        assert (rule.id, rule.title) == ("HARASSMENT.1", "Insults aimed at a person")

    @pytest.mark.parametrize(
        ("item", "example"),
        [
            ("That argument is idiotic. (criticism of an idea)", "That argument is idiotic."),
            ("Nested (notes (are)) fine (really (yes))", "Nested (notes (are)) fine"),
            (r"Buy now \(while stocks last)", "Buy now (while stocks last)"),
            ("(laughs) you idiot", "(laughs) you idiot"),
            ("(all of it in parentheses)", "(all of it in parentheses)"),
            ("You are **such** an `idiot`", "You are such an idiot"),
            ("You <b>idiot</b> &amp; fool", "You <b>idiot</b> & fool"),
            ("You idiot,\n  you utter fool.", "You idiot, you utter fool."),
        ],
    )
    def test_example_text(self, tmp_path: Path, item: str, example: str) -> None:
        """Examples are plain text; a trailing (note) is set aside, markup is not kept."""
        rule = load_policy_file(write_policy(tmp_path, examples=f"- {item}")).rules[0]
        assert rule.violating == (example,)

    @pytest.mark.parametrize(
        "severity",
        ["Severity: High", "**Severity:** high", "severity:high"],
    )
    def test_severity_forms(self, tmp_path: Path, severity: str) -> None:
        """Severity is read case-insensitively, bold or not."""
        rule = load_policy_file(write_policy(tmp_path, severity=severity)).rules[0]
        assert rule.severity == "high"

    def test_severity_line_starts_the_text(self, tmp_path: Path) -> None:
        """Rule text may follow `Severity:` with no blank line between them."""
        path = write_policy(tmp_path, severity="Severity: low\nOnly in direct messages.")
        rule = load_policy_file(path).rules[0]
        assert rule.severity == "low"
        assert rule.text == (
            "Only in direct messages.\n\nContent must not insult an identifiable person."
        )

    def test_description_and_source(self, tmp_path: Path) -> None:
        """The paragraphs under the title describe the policy; sources are file:line."""
        policy = load_policy_file(write_policy(tmp_path))
        assert (policy.id, policy.title, policy.source) == (
            "HARASSMENT",
            "Harassment",
            "harassment.md:1",
        )
        assert policy.description == "Content that targets a specific person with abuse."
        assert policy.rules[0].source == "harassment.md:5"

    def test_comments_are_ignored(self, tmp_path: Path) -> None:
        """`<!-- -->` comments are for writers: not in the text the model reads."""
        path = write_policy(tmp_path, severity="Severity: low\n\n<!-- TODO: tighten -->")
        assert "TODO" not in load_policy_file(path).rules[0].text

    def test_byte_order_mark(self, tmp_path: Path) -> None:
        """A UTF-8 byte-order mark (Windows editors) does not hide the title."""
        path = write_policy(tmp_path)
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
        assert load_policy_file(path).title == "Harassment"

    def test_readme_example(self, tmp_path: Path) -> None:
        """The complete file shown in policies/README.md loads as documented."""
        readme = (default_policies_dir() / "README.md").read_text()
        example = re.search(r"```markdown\n(.*?)```", readme, re.DOTALL)
        assert example is not None
        path = tmp_path / "harassment.md"
        path.write_text(example[1])
        rule = load_policy_file(path).rules[0]
        assert (rule.id, rule.severity, rule.non_violating[0]) == (
            "HARASSMENT.1",
            "medium",
            "That argument is idiotic.",
        )

    def test_single_file(self, tmp_path: Path) -> None:
        """load_policies also takes one file."""
        assert [p.id for p in load_policies(write_policy(tmp_path)).policies] == ["HARASSMENT"]


class TestLookup:
    def test_rule_and_contains(self, policies: PolicySet) -> None:
        """Rules are found by exact id only."""
        assert "HARASSMENT.2" in policies
        assert "HARASSMENT.9" not in policies
        assert "harassment.2" not in policies
        assert 2 not in policies
        assert policies.rule("HATE.1") is not None
        assert policies.rule("HATE.9") is None
        assert len(policies.rules) == sum(len(p.rules) for p in policies.policies)

    def test_typo_finds_the_rule(self, policies: PolicySet) -> None:
        """HARASMENT.2 (one S) suggests HARASSMENT.2 first."""
        assert policies.nearest("HARASMENT.2")[0] == "HARASSMENT.2"

    def test_unknown_number_stays_in_policy(self, policies: PolicySet) -> None:
        """HARASSMENT.9 suggests harassment rules, not rules of other policies."""
        suggested = policies.nearest("HARASSMENT.9")
        assert len(suggested) == 3
        assert all(rule_id.startswith("HARASSMENT.") for rule_id in suggested)

    @pytest.mark.parametrize(
        ("cited", "first"),
        [
            ("HATE_SPEECH.1", "HATE.1"),
            ("SELFHARM.2", "SELF_HARM.2"),
            ("self-harm.3", "SELF_HARM.3"),
            ("SCAM.2", "SPAM.2"),
            ("VIOLENCE.12", "VIOLENCE.1"),
        ],
    )
    def test_near_misses(self, policies: PolicySet, cited: str, first: str) -> None:
        """Misspelt prefixes, extra words and wrong numbers find the intended rule."""
        assert policies.nearest(cited)[0] == first

    @pytest.mark.parametrize("cited", ["FOO.1", "", "THREAT.1"])
    def test_nothing_close(self, policies: PolicySet, cited: str) -> None:
        """An id like no policy gets no suggestion rather than a random one."""
        assert policies.nearest(cited) == []

    def test_k(self, policies: PolicySet) -> None:
        """k bounds the number of suggestions."""
        assert len(policies.nearest("HATE.7", k=1)) == 1
        assert len(policies.nearest("HATE.7", k=10)) == 4


class TestModels:
    def test_duplicate_ids_rejected_in_code(self, policies: PolicySet) -> None:
        """A set built in code cannot hold one policy twice either."""
        with pytest.raises(ValueError, match="duplicate policy ids: HATE"):
            PolicySet(policies=(policies.policies[1], policies.policies[1]))

    def test_rule_belongs_to_its_policy(self, policies: PolicySet) -> None:
        """A rule's id must carry its policy id as prefix."""
        rule = policies.rules[0].model_dump()
        with pytest.raises(ValueError, match="not in policy HATE"):
            Rule.model_validate({**rule, "policy_id": "HATE"})
        policy = policies.policies[0].model_dump()
        with pytest.raises(ValueError, match="do not belong to policy HATE"):
            Policy.model_validate({**policy, "id": "HATE"})

    def test_frozen(self, policies: PolicySet) -> None:
        """Loaded policies cannot be changed behind the version's back."""
        with pytest.raises(ValueError, match="frozen"):
            policies.rules[0].text = "anything goes"  # type: ignore[misc]


class TestPrompt:
    def test_every_rule_id_rendered(self, policies: PolicySet) -> None:
        """render_policies shows the model every rule id, title and example."""
        rendered = render_policies(policies)
        assert policies.version in rendered
        for rule in policies.rules:
            assert f"Rule {rule.id}: {rule.title}" in rendered
            for example in (*rule.violating, *rule.non_violating):
                assert f"- {example}\n" in f"{rendered}\n"

    def test_notes_not_rendered(self, policies: PolicySet) -> None:
        """Notes for humans never reach the model."""
        assert "criticism of an idea, not a person" not in render_policies(policies)
        assert (
            "criticism of an idea, not a person"
            in (default_policies_dir() / "harassment.md").read_text()
        )
