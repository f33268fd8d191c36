"""A golden set through the pipeline, cached and resumable, then measured.

    run = run_golden(moderator, golden, cache_dir)   # model calls only for items not cached
    ev = evaluate(run, profile=profile)              # scores + signal metrics (+ calibrated)
    write_report(ev.results, out_dir)

The run goes through the real `Moderator` (prompt, grounding, citations, signal, fallback),
so what is measured is what production does. Metrics read the raw `p_true` of each
Decision; the calibrated signal is the profile's calibrator applied to it here, so a cached
run can be re-scored with a new profile without calling the model again. Definitions of
every rate and of the signal's unit and label: `pipeline.scoring`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import structlog
from pydantic import JsonValue

from pipeline.batch import run_batch
from pipeline.calibration import (
    CalibrationProfile,
    EvaluationResult,
    signal_informative,
    summarize,
)
from pipeline.decision_cache import DecisionCache, item_key, run_key
from pipeline.defaults import DEFAULT_BINS, DEFAULT_BOOTSTRAP
from pipeline.errors import ConfigError
from pipeline.golden import GoldenSet
from pipeline.models import Decision
from pipeline.runner import Moderator
from pipeline.scoring import Scores, SignalUnits, precision_at_coverage, score, signal_units

log = structlog.get_logger("quoteguard")

#: Coverages at which the report states precision (the plot has the whole curve).
COVERAGES = (0.1, 0.25, 0.5, 0.75, 1.0)
UNIT = "each valid finding with verdict true and a p_true (a violation routing could action)"
LABEL = "1 if the gold label is a violation and lists the finding's rule id, else 0"


@dataclass(frozen=True)
class GoldenRun:
    """The Decisions of one model on one golden set, and what this run paid for them."""

    golden: GoldenSet
    model: str
    policy_version: str
    decisions: dict[str, Decision]
    cached: int
    fresh: int
    calls: int
    cache_path: Path

    @property
    def served_versions(self) -> list[tuple[str, str | None]]:
        """Distinct (served model, fingerprint) pairs among the Decisions with a verdict."""
        found = {
            (d.served_model, d.system_fingerprint)
            for d in self.decisions.values()
            if d.served_model is not None
        }
        return sorted(((m, f) for m, f in found if m is not None), key=lambda v: (v[0], v[1] or ""))

    def served_version(self) -> tuple[str, str | None]:
        """The one served version, or a ConfigError: a profile must be bound to one."""
        versions = self.served_versions
        if len(versions) != 1:
            raise ConfigError(
                f"{len(versions)} served model versions in this run "
                f"({', '.join(f'{m} {f}' for m, f in versions) or 'none: every item failed'}); "
                "a profile binds to exactly one. Clear the cache directory and run again."
            )
        return versions[0]


def endpoint_identity(base_url: str | None) -> str:
    """Scheme, host, port, path and query (Azure's api-version picks the model's behaviour)
    of an endpoint; not its user and password, so rotating them keeps the cache."""
    if base_url is None:
        return "default"
    url = urlsplit(base_url)
    query = f"?{url.query}" if url.query else ""
    return f"{url.scheme}://{url.hostname or ''}:{url.port or ''}{url.path.rstrip('/')}{query}"


def cache_key(moderator: Moderator) -> str:
    """Names the cache file: everything besides the item that shapes a stored Decision.

    The same model name on another endpoint (a local vLLM, a proxy) is another model, and
    the sampling settings change what it answers, so both are in the key. The profiles
    matter only through fallback sampling (which items are borderline), so they join the key
    only when the fallback is on; a disabled fallback then lets `calibrate`, `eval` and
    `compare` share one cache, and a new profile re-scores without model calls.
    """
    settings = moderator.settings
    fallback = settings.fallback
    parts: dict[str, object] = {
        "model": moderator.model,
        "endpoint": endpoint_identity(settings.base_url),
        "sampling": settings.model_dump(
            mode="json",
            include={"output_mode", "temperature", "top_logprobs", "max_output_tokens"},
        ),
        "policy_version": moderator.policy_version,
        "fallback": fallback.model_dump(mode="json") if fallback.enabled else None,
    }
    if fallback.enabled:
        parts["profiles"] = sorted(
            p.profile_id for p in moderator.watch.profiles.profiles if p.model == moderator.model
        )
    return run_key(parts)


def check_rules(golden: GoldenSet, moderator: Moderator) -> None:
    """Gold rule ids must exist in the policy set, or every per-rule number is wrong."""
    unknown = sorted(r for r in golden.rule_ids if r not in moderator.policies)
    if unknown:
        raise ConfigError(
            f"{golden.path}: gold rule ids not in policy set {moderator.policy_version}: "
            f"{', '.join(unknown)}"
        )


def run_golden(
    moderator: Moderator,
    golden: GoldenSet,
    cache_dir: Path | str,
    *,
    concurrency: int | None = None,
    on_decision: Callable[[Decision], None] | None = None,
) -> GoldenRun:
    """Moderate every golden item not already in the cache; return all their Decisions.

    Safe to interrupt: each Decision is in the cache as soon as it exists, and the next run
    moderates only what is missing. Error Decisions are not cached, so they are retried.
    """
    check_rules(golden, moderator)
    model, version = moderator.model, moderator.policy_version
    keys = {item.id: item_key(item.id, item.text, model, version) for item in golden.items}
    cache = DecisionCache.in_dir(cache_dir, cache_key(moderator))
    stored = cache.load()
    decisions = {i: stored[k] for i, k in keys.items() if k in stored}
    todo = [item.content() for item in golden.items if keys[item.id] not in stored]
    cached = len(decisions)
    calls = 0
    log.info("golden_run_started", model=model, items=len(golden), cached=cached, todo=len(todo))

    def collect(decision: Decision) -> None:
        nonlocal calls
        decisions[decision.item_id] = decision
        calls += decision.usage.calls
        cache.append(keys[decision.item_id], decision)
        if on_decision is not None:
            on_decision(decision)

    with cache:
        run_batch(moderator, todo, collect, concurrency or moderator.settings.concurrency)
    log.info("golden_run_finished", model=model, fresh=len(todo), cached=cached, calls=calls)
    return GoldenRun(
        golden=golden,
        model=model,
        policy_version=version,
        decisions=decisions,
        cached=cached,
        fresh=len(todo),
        calls=calls,
        cache_path=cache.path,
    )


@dataclass(frozen=True)
class Evaluation:
    run: GoldenRun
    scores: Scores
    units: SignalUnits
    results: list[EvaluationResult]  # raw signal first, then calibrated; empty: no signal
    profile: CalibrationProfile | None


def _signal_extra(
    p: Sequence[float], y: Sequence[int], n_bins: int, n_bootstrap: int, seed: int
) -> dict[str, JsonValue]:
    """What the shared report does not compute itself: equal-mass ECE with its interval,
    precision at fixed coverages, and the informativeness check."""
    mass = summarize(p, y, n_bins, seed, strategy="quantile", n_bootstrap=n_bootstrap)
    points = [precision_at_coverage(p, y, c) for c in COVERAGES]
    return {
        "bins": {"equal_width": n_bins, "equal_mass": n_bins},
        "ece_equal_mass": mass.ece.model_dump(mode="json"),
        "mce_equal_mass": mass.mce.model_dump(mode="json"),
        "precision_at_coverage": [
            {
                "target": pt.target,
                "coverage": pt.coverage,
                "precision": pt.precision,
                "threshold": pt.threshold,
            }
            for pt in points
        ],
        "informative": signal_informative(p, y).model_dump(mode="json"),
    }


def evaluate(
    run: GoldenRun,
    *,
    profile: CalibrationProfile | None = None,
    n_bins: int = DEFAULT_BINS,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> Evaluation:
    """Scores of the run; the raw signal's metrics; the profile's calibrated ones if given."""
    items = run.golden.items
    scores = score(items, run.decisions)
    units = signal_units(items, run.decisions)
    served = run.served_versions
    base: dict[str, JsonValue] = {
        "model": run.model,
        "served_versions": [f"{m} {f or '-'}" for m, f in served],
        "golden": {"path": str(run.golden.path), "hash": run.golden.golden_hash},
        "policy_version": run.policy_version,
        "signal": {"unit": UNIT, "label": LABEL},
    }
    results: list[EvaluationResult] = []
    if units.p:
        extra = {
            **base,
            **_signal_extra(units.p, units.y, n_bins, n_bootstrap, seed),
            "pipeline": scores.model_dump(mode="json"),
        }
        results.append(
            EvaluationResult.evaluate(
                f"{run.model}: raw p_true",
                units.p,
                units.y,
                extra=extra,
                n_bins=n_bins,
                seed=seed,
                n_bootstrap=n_bootstrap,
            )
        )
        if profile is not None:
            results.append(
                _calibrated(
                    run,
                    units,
                    profile=profile,
                    n_bins=n_bins,
                    n_bootstrap=n_bootstrap,
                    seed=seed,
                )
            )
    log.info(
        "evaluation_scored",
        model=run.model,
        items=scores.items,
        signal_units=scores.signal_units,
        profile_id=profile.profile_id if profile else None,
    )
    return Evaluation(run, scores, units, results, profile)


def _calibrated(
    run: GoldenRun,
    units: SignalUnits,
    *,
    profile: CalibrationProfile,
    n_bins: int,
    n_bootstrap: int,
    seed: int,
) -> EvaluationResult:
    p = [profile.calibrate(v) for v in units.p]
    extra: dict[str, JsonValue] = {
        "profile_id": profile.profile_id,
        "calibrator": profile.calibrator.kind,
        "auto_action_threshold": profile.auto_action_threshold,
        "profile_golden_hash": profile.golden_hash,
        "same_golden_as_profile": profile.golden_hash == run.golden.golden_hash,
        **_signal_extra(p, units.y, n_bins, n_bootstrap, seed),
    }
    return EvaluationResult.evaluate(
        f"{run.model}: calibrated ({profile.calibrator.kind})",
        p,
        units.y,
        extra=extra,
        n_bins=n_bins,
        seed=seed,
        n_bootstrap=n_bootstrap,
    )
