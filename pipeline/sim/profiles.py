"""Behaviour profiles, picked by the requested model name.

A name is a base and optional modifiers joined by '+': `sim-calibrated`,
`sim-collapsed+hallucinating`. Each resolved profile answers as its own dated model
version with its own system_fingerprint, as providers do, so calibration profiles keyed by
served version can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Literal

LogprobStyle = Literal["calibrated", "collapsed"]

#: The snapshot date every simulated model claims, like `gpt-4o-2024-08-06`.
SNAPSHOT = "2026-11-01"
DEFAULT_MODEL = "sim-calibrated"


@dataclass(frozen=True)
class _Base:
    logprobs: LogprobStyle
    tag: str  # short code for the fingerprint


# Real models are overconfident: a logit scaled by ~1.5-2 against the model's actual accuracy
# is what post-hoc temperature scaling typically finds, so a calibrator has work to do.
OVERCONFIDENCE = 1.8

_BASES: dict[str, _Base] = {
    "sim-calibrated": _Base("calibrated", "cal"),
    "sim-collapsed": _Base("collapsed", "col"),
}
_MODIFIERS: dict[str, str] = {"hallucinating": "h"}


@dataclass(frozen=True)
class Profile:
    name: str
    served_model: str
    fingerprint: str
    logprobs: LogprobStyle
    hallucinating: bool
    overconfidence: float = OVERCONFIDENCE


def _build(base: str, modifiers: tuple[str, ...]) -> Profile:
    spec = _BASES[base]
    name = "+".join((base, *modifiers))
    tags = "".join(_MODIFIERS[m] for m in modifiers)
    return Profile(
        name=name,
        served_model=f"{name}-{SNAPSHOT}",
        fingerprint=f"fp_sim{spec.tag}{tags}1",
        logprobs=spec.logprobs,
        hallucinating="hallucinating" in modifiers,
    )


def all_profiles() -> list[Profile]:
    """Every base with every combination of modifiers, in a stable order."""
    mods = sorted(_MODIFIERS)
    return [
        _build(base, combo)
        for base in _BASES
        for size in range(len(mods) + 1)
        for combo in combinations(mods, size)
    ]


def resolve(model: str) -> Profile | None:
    """The profile a requested model name selects, or None if it names no profile.

    Accepts the served (dated) id too, as providers accept a snapshot name.
    """
    name = model.removesuffix(f"-{SNAPSHOT}")
    base, *modifiers = name.split("+")
    if base not in _BASES or len(set(modifiers)) != len(modifiers):
        return None
    if any(m not in _MODIFIERS for m in modifiers):
        return None
    return _build(base, tuple(sorted(modifiers)))
