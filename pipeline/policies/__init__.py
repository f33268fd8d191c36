"""Policy files → a validated, versioned `PolicySet`, and the tools policy writers use.

One job per module:

    model        Rule, Policy, PolicySet (the version hash), rule-id grammar
    header       the optional front-matter header and its JSON Schema
    markdown     the Markdown-shaped parser ('# Title', '## POLICY.1 Title', examples)
    prose        the prose-shaped parser (tiers such as SP2, rule lines such as SP2.a)
    loader       files on disk → PolicySet; every problem of every file at once
    diagnostics  one problem per line, `path:line:col: CODE message`, stable codes
    lint         the checks that need the whole set (references, shared examples, length)
    diff         what changed between two sets
    testing      each example as a test case of the whole pipeline

policies/README.md is the writers' guide.
"""

from pipeline.policies.loader import default_policies_dir, load_policies, load_policy_file
from pipeline.policies.model import Policy, PolicySet, Rule, Severity

__all__ = [
    "Policy",
    "PolicySet",
    "Rule",
    "Severity",
    "default_policies_dir",
    "load_policies",
    "load_policy_file",
]
