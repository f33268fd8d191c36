"""`quoteguard eval | calibrate | compare`: measure, calibrate and gate a model version.

Each command runs the golden set through the real pipeline (cached and resumable under
--cache-dir, see `pipeline.evaluation`), then calls the calibration library. `--sim` starts
the simulated model in-process instead of needing --base-url, so a newcomer can try:

    quoteguard sim golden --n 1000 --seed 1 -o golden.jsonl
    quoteguard calibrate --golden golden.jsonl --model sim-calibrated --sim
    quoteguard compare --golden golden.jsonl --model sim-calibrated --model sim-collapsed --sim

Exit codes: 0 done (compare: the new version passed), 1 compare's gate failed or the
golden set cannot support a calibration, 2 usage or configuration error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.endpoint import endpoint, require_endpoint
from pipeline.cli.options import BaseUrlOpt, ConcurrencyOpt, PoliciesOpt, ProfilesOpt
from pipeline.defaults import (
    DEFAULT_BINS,
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_COVERAGE,
    DEFAULT_TARGET_PRECISION,
    DEFAULT_TOLERANCE,
    PrecisionBound,
)

if TYPE_CHECKING:  # imported inside the commands at run time (see pipeline.cli)
    from pydantic import JsonValue

    from pipeline.config import Settings
    from pipeline.evaluation import Evaluation, GoldenRun
    from pipeline.golden import GoldenSet
    from pipeline.runner import Moderator

GoldenOpt = Annotated[
    Path,
    typer.Option(
        "--golden", exists=True, dir_okay=False, readable=True, help="Labelled JSONL set."
    ),
]
ModelOpt = Annotated[str, typer.Option("--model", help="Model name for the provider.")]
SimOpt = Annotated[
    bool, typer.Option("--sim", help="Start the simulated model in-process (no --base-url).")
]
OutDirOpt = Annotated[Path, typer.Option("--out-dir", help="Report directory (HTML, JSON, PNG).")]
CacheOpt = Annotated[
    Path, typer.Option("--cache-dir", help="Decisions cache: reruns only call for new items.")
]
BinsOpt = Annotated[int, typer.Option("--bins", min=2, max=100, help="Bins for ECE/MCE/SCE.")]
BootstrapOpt = Annotated[
    int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples for every interval.")
]
FallbackOpt = Annotated[
    bool | None,
    typer.Option(
        "--fallback/--no-fallback",
        help="Sample borderline items (one extra call each); default from settings (off).",
    ),
]

DEFAULT_CACHE = Path(".quoteguard-cache")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
    app.command("calibrate")(calibrate)
    app.command("compare")(compare)


# ----------------------------------------------------------------------------- commands


def eval_(
    golden: GoldenOpt,
    model: ModelOpt,
    base_url: BaseUrlOpt = None,
    sim: SimOpt = False,
    out_dir: OutDirOpt = Path("eval-report"),
    cache_dir: CacheOpt = DEFAULT_CACHE,
    profiles: ProfilesOpt = None,
    bins: BinsOpt = DEFAULT_BINS,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    concurrency: ConcurrencyOpt = None,
    fallback: FallbackOpt = None,
    policies: PoliciesOpt = None,
) -> None:
    """Run a golden set through the pipeline and report accuracy, grounding and the signal.

    With a profile for the served version in --profiles, the calibrated signal is reported
    beside the raw one. Writes report.html (self-contained), report.json and the plots.
    """
    from pipeline.cli.calibration_tables import evaluations_table  # noqa: PLC0415 - see pipeline.cli
    from pipeline.cli.render import console  # noqa: PLC0415

    gs = _golden(golden)
    with endpoint(base_url, sim) as (url, key):
        settings = _settings(model, url, key, concurrency, fallback, policies, profiles)
        ev = _evaluate(settings, gs, cache_dir, bins, bootstrap)
    _warn_same_golden(ev)
    _write([ev], out_dir, f"quoteguard eval: {model}")
    console.print(evaluations_table([ev], f"quoteguard eval: {model} on {golden.name}"))
    console.print(f"Report written to {out_dir / 'report.html'}")


def calibrate(
    golden: GoldenOpt,
    model: ModelOpt,
    base_url: BaseUrlOpt = None,
    sim: SimOpt = False,
    target_precision: Annotated[
        float,
        typer.Option(min=0.5, max=1.0, help="Precision auto-actions must reach on the set."),
    ] = DEFAULT_TARGET_PRECISION,
    precision_bound: Annotated[
        PrecisionBound,
        typer.Option(
            help="wilson: the lower end of the precision's confidence interval must reach "
            "the target (a small set earns no threshold); point: the measured precision."
        ),
    ] = "wilson",
    confidence: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="Confidence of the Wilson bound.")
    ] = DEFAULT_CONFIDENCE,
    profiles: ProfilesOpt = None,
    cache_dir: CacheOpt = DEFAULT_CACHE,
    bins: BinsOpt = DEFAULT_BINS,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    concurrency: ConcurrencyOpt = None,
    fallback: FallbackOpt = None,
    policies: PoliciesOpt = None,
) -> None:
    """Fit a calibrator on a golden set and save a profile bound to the served version.

    Temperature, Platt and isotonic (with enough data) compete on held-out NLL; the
    threshold is the lowest calibrated p whose auto-actions reach --target-precision, by
    default with 95 % confidence (--precision-bound wilson).
    """
    from pipeline.calibration import ProfileStore, build_profile  # noqa: PLC0415 - see pipeline.cli
    from pipeline.cli.calibration_tables import profile_table  # noqa: PLC0415
    from pipeline.cli.render import console  # noqa: PLC0415
    from pipeline.errors import QuoteguardError  # noqa: PLC0415
    from pipeline.evaluation import evaluate  # noqa: PLC0415

    if precision_bound == "wilson" and target_precision >= 1.0:
        raise typer.BadParameter(
            "no finite golden set vouches for a precision of 1.0 with a lower bound: "
            "aim lower, or use --precision-bound point",
            param_hint="--target-precision",
        )
    gs = _golden(golden)
    with endpoint(base_url, sim) as (url, key):
        settings = _settings(model, url, key, concurrency, fallback, policies, profiles)
        settings.profiles_dir.mkdir(parents=True, exist_ok=True)
        with _moderator(settings) as moderator:
            run = _run(moderator, gs, cache_dir)
    try:
        served, fingerprint = run.served_version()
    except QuoteguardError as exc:
        raise typer.BadParameter(str(exc)) from exc
    ev = evaluate(run, n_bins=bins, n_bootstrap=bootstrap)
    try:
        profile = build_profile(
            ev.units.p,
            ev.units.y,
            model=model,
            served_model=served,
            system_fingerprint=fingerprint,
            golden_hash=gs.golden_hash,
            target_precision=target_precision,
            precision_bound=precision_bound,
            confidence=confidence,
            n_bins=bins,
            n_bootstrap=bootstrap,
        )
    except ValueError as exc:
        console.print(
            f"cannot calibrate on this golden set: {exc} "
            f"({ev.scores.signal_units} signal units from {len(gs)} items). "
            "Add items, especially ones the model gets wrong."
        )
        raise typer.Exit(1) from exc
    path = ProfileStore.save(profile, settings.profiles_dir)
    console.print(profile_table(profile))
    if not profile.informative:
        console.print(
            "The signal of this version is NOT informative: it will never auto-action on "
            "logprobs. Everything it flags goes to review."
        )
    console.print(f"Profile written to {path}")


def compare(
    golden: GoldenOpt,
    model: Annotated[
        list[str], typer.Option("--model", help="Twice: the OLD version, then the NEW one.")
    ],
    base_url: BaseUrlOpt = None,
    sim: SimOpt = False,
    coverage: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="Share of units auto-actioned, most sure first."),
    ] = DEFAULT_COVERAGE,
    tolerance: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Allowed absolute fall of that precision.")
    ] = DEFAULT_TOLERANCE,
    out_dir: OutDirOpt = Path("compare-report"),
    cache_dir: CacheOpt = DEFAULT_CACHE,
    profiles: ProfilesOpt = None,
    bins: BinsOpt = DEFAULT_BINS,
    bootstrap: BootstrapOpt = DEFAULT_BOOTSTRAP,
    concurrency: ConcurrencyOpt = None,
    fallback: FallbackOpt = None,
    policies: PoliciesOpt = None,
) -> None:
    """The upgrade gate: both versions on the same golden set, side by side.

    Exits 1 when the NEW version's signal collapsed (not informative), or when its
    precision at the chosen coverage fell below the OLD one's by more than the tolerance
    (see pipeline.upgrade_gate).
    """
    from pipeline.cli.calibration_tables import evaluations_table, gate_table  # noqa: PLC0415 - see pipeline.cli
    from pipeline.cli.render import console  # noqa: PLC0415
    from pipeline.upgrade_gate import GateRule, gate  # noqa: PLC0415

    if len(model) != 2:
        raise typer.BadParameter("give --model twice: the old version, then the new one")
    old_name, new_name = model
    gs = _golden(golden)
    with endpoint(base_url, sim) as (url, key):
        old, new = (
            _evaluate(
                _settings(name, url, key, concurrency, fallback, policies, profiles),
                gs,
                cache_dir,
                bins,
                bootstrap,
            )
            for name in (old_name, new_name)
        )
    result = gate(
        old.units.p,
        old.units.y,
        new.units.p,
        new.units.y,
        GateRule(coverage=coverage, tolerance=tolerance),
    )
    gate_doc: dict[str, JsonValue] = {"gate": result.model_dump(mode="json")}
    _write([old, new], out_dir, f"quoteguard compare: {old_name} -> {new_name}", gate_doc)
    console.print(evaluations_table([old, new], f"quoteguard compare on {golden.name}"))
    console.print(gate_table(result, old_name, new_name))
    console.print(f"Report written to {out_dir / 'report.html'}")
    if not result.passed:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------- helpers


def _golden(path: Path) -> GoldenSet:
    from pipeline.errors import QuoteguardError  # noqa: PLC0415 - see pipeline.cli
    from pipeline.golden import load_golden  # noqa: PLC0415

    try:
        return load_golden(path)
    except QuoteguardError as exc:
        raise typer.BadParameter(str(exc), param_hint="--golden") from exc


def _settings(
    model: str,
    base_url: str | None,
    api_key: str | None,
    concurrency: int | None,
    fallback: bool | None,
    policies: Path | None,
    profiles: Path | None,
) -> Settings:
    from pipeline.config import load_settings  # noqa: PLC0415 - see pipeline.cli
    from pipeline.log import configure_logging  # noqa: PLC0415

    try:
        settings = load_settings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            concurrency=concurrency,
            policies_dir=policies,
            profiles_dir=profiles,
        )
        if fallback is not None:
            update = settings.fallback.model_copy(update={"enabled": fallback})
            settings = settings.model_copy(update={"fallback": update})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    require_endpoint(settings)
    configure_logging(settings.log_level, settings.log_format, secrets=[settings.api_key])
    return settings


def _moderator(settings: Settings) -> Moderator:
    from pipeline.errors import QuoteguardError  # noqa: PLC0415 - see pipeline.cli
    from pipeline.llm import LLMClient  # noqa: PLC0415
    from pipeline.policies import load_policies  # noqa: PLC0415
    from pipeline.runner import Moderator  # noqa: PLC0415
    from pipeline.standing import SignalWatch  # noqa: PLC0415

    try:
        policies = load_policies(settings.policies_dir)
        watch = SignalWatch.from_settings(settings)
    except QuoteguardError as exc:
        raise typer.BadParameter(str(exc)) from exc
    return Moderator(settings, policies, LLMClient(settings), watch)


def _run(moderator: Moderator, gs: GoldenSet, cache_dir: Path) -> GoldenRun:
    from pipeline.errors import QuoteguardError  # noqa: PLC0415 - see pipeline.cli
    from pipeline.evaluation import run_golden  # noqa: PLC0415

    with _progress(len(gs), moderator.model) as advance:
        try:
            return run_golden(moderator, gs, cache_dir, on_decision=lambda _d: advance())
        except QuoteguardError as exc:
            raise typer.BadParameter(str(exc)) from exc


def _evaluate(
    settings: Settings, gs: GoldenSet, cache_dir: Path, bins: int, bootstrap: int
) -> Evaluation:
    from pipeline.evaluation import evaluate  # noqa: PLC0415 - see pipeline.cli

    with _moderator(settings) as moderator:
        run = _run(moderator, gs, cache_dir)
        versions = run.served_versions
        profile = moderator.watch.profile_for(*versions[0]) if len(versions) == 1 else None
    return evaluate(run, profile=profile, n_bins=bins, n_bootstrap=bootstrap)


def _warn_same_golden(ev: Evaluation) -> None:
    from pipeline.cli.render import console  # noqa: PLC0415 - see pipeline.cli

    if ev.profile is not None and ev.profile.golden_hash == ev.run.golden.golden_hash:
        console.print(
            "note: the profile was fitted on this very golden set, so its calibrated metrics "
            "are optimistic; evaluate on a held-out set."
        )


def _write(
    evaluations: list[Evaluation],
    out_dir: Path,
    title: str,
    more: dict[str, JsonValue] | None = None,
) -> None:
    """report.html + report.json + plots via the library; the run facts join each result."""
    from pipeline.calibration import EvaluationResult, write_report  # noqa: PLC0415 - see pipeline.cli
    from pipeline.cli.render import console  # noqa: PLC0415

    results = []
    for n, ev in enumerate(evaluations):
        # `more` (compare's gate) describes the last, NEW, version: it is attached there once.
        tail = (more or {}) if n == len(evaluations) - 1 else {}
        run: dict[str, JsonValue] = {
            "cached_items": ev.run.cached,
            "fresh_items": ev.run.fresh,
            "calls_this_run": ev.run.calls,
            "cache_file": str(ev.run.cache_path),
        }
        for i, r in enumerate(ev.results):
            extra = {**r.extra, "run": run, **tail} if i == 0 else dict(r.extra)
            results.append(EvaluationResult(r.name, r.p, r.y, r.metrics, extra))
    if not results:
        out_dir.mkdir(parents=True, exist_ok=True)
        doc = {ev.run.model: ev.scores.model_dump(mode="json") for ev in evaluations}
        report = {"results": [], "scores": doc, **(more or {})}
        (out_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        console.print("no signal units (no valid violation with logprobs): wrote JSON only")
        return
    write_report(results, out_dir, title)


@contextmanager
def _progress(total: int, model: str) -> Iterator[Callable[[], None]]:
    from rich.progress import (  # noqa: PLC0415 - see pipeline.cli
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from pipeline.cli.render import console  # noqa: PLC0415

    # markup=False: a model name is printed as written, never read as rich markup.
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(model, total=total)
        yield lambda: progress.advance(task)
