"""What the model must return, as a pydantic schema instructor enforces.

Field order is part of the contract: each finding's `verdict` comes after its quotes and
explanation, so the model commits to a verdict only after it has grounded itself, and the
verdict token's logprob is read at a known place in the JSON.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Finding(BaseModel):
    """One candidate violation, justified by a rule and verbatim quotes."""

    model_config = ConfigDict(extra="forbid")

    rule_id: str = Field(
        description="Id of the rule this finding is about, exactly as written in the policy, "
        "for example HARASSMENT.2."
    )
    quotes: list[str] = Field(
        min_length=1,
        description="Verbatim excerpts copied character for character from the content that "
        "show the violation. Use ... between pieces only to skip text.",
    )
    explanation: str = Field(
        description="How the quoted text meets (or does not meet) the rule's text."
    )
    verdict: bool = Field(
        description="true if the quoted content violates the cited rule, false if it does not."
    )


class ModerationResult(BaseModel):
    """The model's assessment of one piece of content."""

    model_config = ConfigDict(extra="forbid")

    findings: list[Finding] = Field(
        default_factory=list,
        description="One entry per rule the content may violate; empty if it violates none.",
    )

    @property
    def violation(self) -> bool:
        return any(f.verdict for f in self.findings)
