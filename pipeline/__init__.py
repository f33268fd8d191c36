"""quoteguard: grounding-enforcement moderation.

Every violation the model reports must cite a rule that exists and quote the content
verbatim; code checks both, and a logprob signal calibrated per model version decides what
may be actioned without a person. The names below are the supported public API.
"""

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
