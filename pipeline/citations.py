"""Checks that every rule a finding cites exists in the loaded policy set."""

from __future__ import annotations

from pipeline.models import CitationCheck
from pipeline.policies import PolicySet


def check_citation(rule_id: str, policies: PolicySet) -> CitationCheck:
    """Exists, or a hallucinated rule reported with the nearest real ids.

    Ids are compared exactly after trimming whitespace: `harassment.2` is not `HARASSMENT.2`,
    because a model that cannot copy an id exactly has not read the rule it cites.
    """
    if rule_id.strip() in policies:
        return CitationCheck(rule_id=rule_id, exists=True)
    return CitationCheck(rule_id=rule_id, exists=False, nearest=policies.nearest(rule_id))
