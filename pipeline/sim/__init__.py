"""The simulated model: an OpenAI-compatible chat-completions server with behaviour profiles.

    with SimServer(SimConfig(seed=1)) as sim:
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim")

It reads the policy rules and the fenced content out of the prompt like a model would,
classifies with a deliberately imperfect lexical model, and answers in the wire format of
OpenAI: JSON in the message content, logprobs with top_logprobs, usage with cached tokens,
system_fingerprint, OpenAI-shaped errors. Profiles (by model name): `sim-calibrated`,
`sim-collapsed`, each optionally `+hallucinating`. Faults: 429 with retry-after(-ms), 500,
stalls, malformed and truncated JSON, latency.
"""

from pipeline.sim.classifier import ClassifierParams, Judgement, judge
from pipeline.sim.config import FAULT_KINDS, FaultConfig, FaultKind, LatencyConfig, SimConfig
from pipeline.sim.golden import LabelledItem, generate, generate_from_policies, read_jsonl
from pipeline.sim.profiles import DEFAULT_MODEL, Profile, all_profiles, resolve
from pipeline.sim.server import FAULT_HEADER, SimServer, create_app, serve

__all__ = [
    "DEFAULT_MODEL",
    "FAULT_HEADER",
    "FAULT_KINDS",
    "ClassifierParams",
    "FaultConfig",
    "FaultKind",
    "Judgement",
    "LabelledItem",
    "LatencyConfig",
    "Profile",
    "SimConfig",
    "SimServer",
    "all_profiles",
    "create_app",
    "generate",
    "generate_from_policies",
    "judge",
    "read_jsonl",
    "resolve",
    "serve",
]
