"""The policy model: `Rule`, `Policy` and the versioned `PolicySet` the pipeline reads.

The parsers (`markdown`, `prose`) build these; nothing here reads files.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator
from rapidfuzz import fuzz

Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: dict[str, Severity] = {level: level for level in get_args(Severity)}

#: Upper-case words joined by `_` (SELF_HARM); a rule adds `.N` with N from 1, no leading
#: zero, so HARASSMENT.01 cannot become a second spelling of HARASSMENT.1.
POLICY_ID = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*"
NUMBERED_RULE_ID = rf"{POLICY_ID}\.[1-9][0-9]*"
#: Prose-shaped policies name rules by tier and letter, as trust-and-safety teams write
#: them: `SP2.a` is rule a of tier SP2 (its letters are the policy's code, its digit the tier).
TIER_ID = r"[A-Z]{1,8}[0-9]"
TIER_RULE_ID = rf"{TIER_ID}\.[a-z]{{1,2}}"
RULE_ID = rf"(?:{NUMBERED_RULE_ID}|{TIER_RULE_ID})"

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
        # A tier id (SP2.a) carries the policy's code, not its id; the prose parser checks
        # that a file's tiers share one code.
        numbered = re.fullmatch(NUMBERED_RULE_ID, self.id)
        if numbered and self.id.rpartition(".")[0] != self.policy_id:
            raise ValueError(f"rule id {self.id} is not in policy {self.policy_id}")
        return self


class Policy(BaseModel):
    """One policy file: a title, a description, its rules and what it allows outright."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=rf"^{POLICY_ID}$")
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    #: Content the policy allows as a whole, tied to no rule (a prose policy's allowed tier).
    allowed: tuple[str, ...] = ()
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
        must not change the version that every Decision records. An empty `allowed` is
        left out too, so sets written before it existed keep their version.
        """
        content = []
        for policy in self.policies:
            dumped = policy.model_dump(
                mode="json", exclude={"source": True, "rules": {"__all__": {"source"}}}
            )
            if not policy.allowed:
                del dumped["allowed"]
            content.append(dumped)
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
