"""Prose-shaped policies, the front-matter header and its JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import PolicyError
from pipeline.policies import PolicySet, load_policies, load_policy_file
from pipeline.policies.header import SCHEMA_PATH, Header, header_schema
from pipeline.prompt import render_policies

FIXTURES = Path(__file__).parent / "fixtures" / "policies"
PROSE = FIXTURES / "prose" / "group_hate.md"
STRUCTURED = FIXTURES / "structured" / "group_hate.md"

#: Where it is written is not what it says: the twins differ only in `source`.
NOT_CONTENT = {"source": True, "rules": {"__all__": {"source"}}}


def prose(tmp_path: Path, body: str, header: str = "id: SPAM\ntitle: Spam\nformat: prose") -> Path:
    path = tmp_path / "spam.md"
    path.write_text(f"---\n{header}\n---\n{body}", encoding="utf-8")
    return path


class TestTwins:
    def test_same_policy_set(self) -> None:
        """The prose policy and its structured twin load into the same PolicySet."""
        written_as_prose, structured = load_policies(PROSE), load_policies(STRUCTURED)
        assert written_as_prose.version == structured.version
        assert [p.model_dump(exclude=NOT_CONTENT) for p in written_as_prose.policies] == [
            p.model_dump(exclude=NOT_CONTENT) for p in structured.policies
        ]

    def test_what_the_prose_says(self) -> None:
        """Tiers give rules their severity and text; rule lines give names and examples."""
        policy = load_policy_file(PROSE)
        assert (policy.id, policy.title) == ("GROUP_HATE", "Hate aimed at protected groups")
        assert [(r.id, r.severity) for r in policy.rules] == [
            ("GH2.a", "medium"),
            ("GH2.b", "medium"),
            ("GH3.a", "high"),
            ("GH4.a", "critical"),
            ("GH4.b", "critical"),
        ]
        threat = policy.rules[3]
        assert threat.title == "Direct threat"
        assert threat.violating == (
            "I want to kill all women.",
            "我想杀死所有女人。",
            "انا عاوز اقتل كل النساء.",
        )
        assert threat.text.endswith("Output: INVALID (GH4) and escalate.")
        assert threat.source == "group_hate.md:39"

    def test_allowed_tier(self) -> None:
        """Tier GH0's examples are the policy's allowed examples; quotes inside 「」 stay."""
        policy = load_policy_file(PROSE)
        assert "如果你说“我恨女人”，你就是一个更可恨的人。" in policy.allowed
        assert "أنا مرأة." in policy.allowed
        assert len(policy.allowed) == 7

    def test_the_model_reads_allowed_examples(self) -> None:
        """The prompt lists the allowed examples under their policy."""
        rendered = render_policies(load_policies(PROSE))
        assert "Allowed under this policy (not violations):\n- I am a woman." in rendered

    def test_allowed_changes_the_version(self, tmp_path: Path) -> None:
        """An allowed example is read by the model, so changing it changes the version."""
        changed = tmp_path / "group_hate.md"
        changed.write_text(
            PROSE.read_text(encoding="utf-8").replace("I love women.", "I love my mum.")
        )
        assert load_policies(changed).version != load_policies(PROSE).version


class TestProseShape:
    @pytest.mark.parametrize(
        ("line", "examples"),
        [
            ("SP2.a Cold promotion – “Buy my course”", ("Buy my course",)),
            ("- **SP2.a Cold promotion** – “Buy”, “Sell”", ("Buy", "Sell")),
            ('* SP2.a Cold promotion - "Buy" or "Sell"', ("Buy", "Sell")),
            ("SP2.a Cold promotion — Buy my course", ("Buy my course",)),
            ("SP2.a Cold promotion – «Achetez» ; 「買って」", ("Achetez", "買って")),
            ("SP2.a Cold promotion – “unbalanced", ("“unbalanced",)),
        ],
    )
    def test_rule_lines(self, tmp_path: Path, line: str, examples: tuple[str, ...]) -> None:
        """Bullets, bold, dashes and quotation marks of several scripts are read as meant."""
        body = (
            f"Spam wastes time.\n\n🚫 Likely Spam (SP2 – Medium Confidence)\nPromotion.\n{line}\n"
        )
        rule = load_policy_file(prose(tmp_path, body)).rules[0]
        assert (rule.id, rule.title, rule.violating) == ("SP2.a", "Cold promotion", examples)

    @pytest.mark.parametrize(
        ("label", "severity"),
        [
            ("Low", "low"),
            ("Medium Confidence", "medium"),
            ("Strong Confidence", "high"),
            ("Maximum Severity", "critical"),
            ("Critical", "critical"),
        ],
    )
    def test_tier_severity(self, tmp_path: Path, label: str, severity: str) -> None:
        """A tier's label names its severity in the words the field uses."""
        body = f"Spam.\n\n## Spam (SP3 – {label})\nPromotion.\n- SP3.a Ad – “Buy”\n"
        assert load_policy_file(prose(tmp_path, body)).rules[0].severity == severity

    def test_severity_line_wins(self, tmp_path: Path) -> None:
        """A 'Severity:' line under the tier heading says it when the label does not."""
        body = "Spam.\n\n## Spam (SP3 – Likely)\nSeverity: high\nPromotion.\n- SP3.a Ad – “Buy”\n"
        assert load_policy_file(prose(tmp_path, body)).rules[0].severity == "high"

    def test_tiers_share_a_code(self, tmp_path: Path) -> None:
        """Tiers of two codes in one file are an error on the tier that strays."""
        body = (
            "Spam.\n\n## A (SP2 – Low)\nx.\n- SP2.a Ad – “Buy”\n\n"
            "## B (SC3 – High)\ny.\n- SC3.a Scam – “Pay”\n"
        )
        with pytest.raises(PolicyError, match="share one code") as caught:
            load_policy_file(prose(tmp_path, body))
        assert caught.value.line == 12

    def test_header_is_required(self, tmp_path: Path) -> None:
        """Without a header a prose file is read as Markdown, and says what it lacks."""
        path = tmp_path / "spam.md"
        path.write_text("Spam.\n\n## Spam (SP2 – Low)\nx.\n- SP2.a Ad – “Buy”\n", encoding="utf-8")
        with pytest.raises(PolicyError, match="policy title"):
            load_policy_file(path)

    def test_markdown_tier_ids_need_a_header_id(self, tmp_path: Path) -> None:
        """A Markdown file with tier ids (GH2.a) takes its policy id from the header."""
        path = tmp_path / "hate.md"
        path.write_text(
            "# Hate\n\nAbout hate.\n\n## GH2.a Hatred\nSeverity: low\n\nNo.\n\n### Violates\n- x\n",
            encoding="utf-8",
        )
        with pytest.raises(PolicyError, match="need the policy id in a front-matter header"):
            load_policy_file(path)
        path.write_text("---\nid: HATE\n---\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
        assert load_policy_file(path).rules[0].policy_id == "HATE"

    def test_bundled_set_with_a_prose_policy(self, tmp_path: Path) -> None:
        """A prose policy joins a folder of Markdown ones and is shown to the model."""
        folder = tmp_path / "set"
        folder.mkdir()
        for file in Path(__file__).parents[1].joinpath("policies").glob("*.md"):
            (folder / file.name).write_bytes(file.read_bytes())
        (folder / "group_hate.md").write_bytes(PROSE.read_bytes())
        policies: PolicySet = load_policies(folder)
        assert policies.rule("GH4.a") is not None
        assert "### Rule GH4.a: Direct threat" in render_policies(policies)


class TestHeaderSchema:
    def test_shipped_schema_is_the_models(self) -> None:
        """header.schema.json is what Header says (regenerate with header.write_schema())."""
        assert json.loads(SCHEMA_PATH.read_text(encoding="utf-8")) == header_schema()

    def test_schema_refuses_unknown_fields(self) -> None:
        """The schema, like the loader, allows no field it does not name."""
        schema = header_schema()
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) == set(Header.model_fields)  # type: ignore[call-overload]

    def test_empty_header(self, tmp_path: Path) -> None:
        """An empty header is a Markdown file's defaults."""
        path = tmp_path / "harassment.md"
        body = (
            "# Harassment\n\nAbuse.\n\n## HARASSMENT.1 Insults\nSeverity: low\n\nNo.\n\n"
            "### Violates\n- idiot\n"
        )
        path.write_text("---\n---\n" + body, encoding="utf-8")
        assert load_policy_file(path).rules[0].source == "harassment.md:7"
