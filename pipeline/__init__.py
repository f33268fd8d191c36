"""quoteguard: grounding-enforcement moderation.

Every violation the model reports must cite a rule that exists and quote the content
verbatim; code checks both, and a logprob signal calibrated per model version decides what
may be actioned without a person. The names below are the supported public API.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers; at run time each name loads on first use (below)
    from pipeline.calibration import CalibrationProfile, ProfileStore
    from pipeline.config import RoutingConfig, Settings, load_settings
    from pipeline.errors import (
        ConfigError,
        InputError,
        LLMError,
        LLMRequestError,
        LLMRetriesExhausted,
        LLMTransientError,
        PolicyError,
        QuoteguardError,
    )
    from pipeline.grounding import Grounder, locate
    from pipeline.llm import LLMClient, RateGate
    from pipeline.models import (
        CitationCheck,
        ContentItem,
        Decision,
        FindingReport,
        Match,
        Outcome,
        QuoteVerdict,
    )
    from pipeline.policies import Policy, PolicySet, Rule, load_policies
    from pipeline.routing import Route, SignalStanding, route
    from pipeline.runner import Moderator
    from pipeline.schema import Finding, ModerationResult

#: Public name -> the module that defines it. Loaded on first access (PEP 562), so that
#: `import pipeline.models` or `import workers.review_queue` does not pay for openai,
#: instructor and scipy (about 2 s) when it needs none of them.
_LAZY = {
    "CalibrationProfile": "pipeline.calibration",
    "CitationCheck": "pipeline.models",
    "ConfigError": "pipeline.errors",
    "ContentItem": "pipeline.models",
    "Decision": "pipeline.models",
    "Finding": "pipeline.schema",
    "FindingReport": "pipeline.models",
    "Grounder": "pipeline.grounding",
    "InputError": "pipeline.errors",
    "LLMClient": "pipeline.llm",
    "LLMError": "pipeline.errors",
    "LLMRequestError": "pipeline.errors",
    "LLMRetriesExhausted": "pipeline.errors",
    "LLMTransientError": "pipeline.errors",
    "Match": "pipeline.models",
    "ModerationResult": "pipeline.schema",
    "Moderator": "pipeline.runner",
    "Outcome": "pipeline.models",
    "Policy": "pipeline.policies",
    "PolicyError": "pipeline.errors",
    "PolicySet": "pipeline.policies",
    "ProfileStore": "pipeline.calibration",
    "QuoteVerdict": "pipeline.models",
    "QuoteguardError": "pipeline.errors",
    "RateGate": "pipeline.llm",
    "Route": "pipeline.routing",
    "RoutingConfig": "pipeline.config",
    "Rule": "pipeline.policies",
    "Settings": "pipeline.config",
    "SignalStanding": "pipeline.routing",
    "load_policies": "pipeline.policies",
    "load_settings": "pipeline.config",
    "locate": "pipeline.grounding",
    "route": "pipeline.routing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "CalibrationProfile",
    "CitationCheck",
    "ConfigError",
    "ContentItem",
    "Decision",
    "Finding",
    "FindingReport",
    "Grounder",
    "InputError",
    "LLMClient",
    "LLMError",
    "LLMRequestError",
    "LLMRetriesExhausted",
    "LLMTransientError",
    "Match",
    "ModerationResult",
    "Moderator",
    "Outcome",
    "Policy",
    "PolicyError",
    "PolicySet",
    "ProfileStore",
    "QuoteVerdict",
    "QuoteguardError",
    "RateGate",
    "Route",
    "RoutingConfig",
    "Rule",
    "Settings",
    "SignalStanding",
    "load_policies",
    "load_settings",
    "locate",
    "route",
]
