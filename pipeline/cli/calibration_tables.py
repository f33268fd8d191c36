"""Rich tables for `eval`, `calibrate` and `compare`. Model names and rule ids are shown
through `safe` (plain Text): a hostile id in a golden file cannot drive the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table

from pipeline.calibration import CalibrationProfile, Estimate, SignalMetrics
from pipeline.cli.render import safe
from pipeline.evaluation import Evaluation
from pipeline.upgrade_gate import GateResult

_SIGNAL_ROWS = ("ece", "mce", "sce", "brier", "nll", "auc")


def _num(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _est(e: Estimate) -> str:
    if e.value is None:
        return "n/a"
    if e.low is None or e.high is None:
        return f"{e.value:.4f}"
    return f"{e.value:.4f} [{e.low:.4f}, {e.high:.4f}]"


def _rows(ev: Evaluation) -> list[tuple[str, str]]:
    s = ev.scores
    fb = s.fallback
    return [
        ("items (scored / errors)", f"{s.items} ({s.scored} / {sum(s.errors.values())})"),
        ("model calls this run (cached items)", f"{ev.run.calls} ({ev.run.cached})"),
        ("served versions", ", ".join(s.served_versions) or "none"),
        ("accuracy", _num(s.item.accuracy)),
        ("precision", _num(s.item.precision)),
        ("recall", _num(s.item.recall)),
        ("grounding rate (quotes)", f"{_num(s.grounding_rate)} of {s.quotes}"),
        ("hallucinated-rule rate", f"{_num(s.hallucinated_rule_rate)} of {s.findings}"),
        (
            "signal units (violations w/o p_true)",
            f"{s.signal_units} ({s.violations_without_signal})",
        ),
        ("fallback: items sampled", f"{fb.sampled_items} ({_num(fb.share_sampled, 3)})"),
        ("fallback: extra calls per item", _num(fb.extra_calls_per_item, 3)),
        ("fallback: AUC of agreement x grounding", _num(fb.auc, 3)),
    ]


def _signal(m: SignalMetrics | None, key: str) -> str:
    return "n/a" if m is None else _est(getattr(m, key))


def _extra_est(ev_index: int, ev: Evaluation, key: str) -> str:
    if ev_index >= len(ev.results):
        return "n/a"
    value = ev.results[ev_index].extra.get(key)
    if not isinstance(value, dict):
        return "n/a"
    return _est(Estimate.model_validate(value))


def evaluations_table(evaluations: Sequence[Evaluation], title: str) -> Table:
    """One column per evaluation: pipeline scores, then raw and calibrated signal metrics."""
    table = Table(title=title, header_style="bold")
    table.add_column("measure")
    for ev in evaluations:
        table.add_column(safe(ev.run.model), justify="right")
    for i, (label, _) in enumerate(_rows(evaluations[0])):
        table.add_row(label, *(_rows(ev)[i][1] for ev in evaluations))
    bins = evaluations[0].results[0].metrics.n_bins if evaluations[0].results else 0
    for index, kind in ((0, "raw"), (1, "calibrated")):
        if not any(len(ev.results) > index for ev in evaluations):
            continue
        metrics = [
            ev.results[index].metrics if len(ev.results) > index else None for ev in evaluations
        ]
        for key in _SIGNAL_ROWS:
            label = f"{kind} {key.upper()}"
            if key in ("ece", "mce", "sce"):
                label += f" ({bins} equal-width bins)"
            table.add_row(label, *(_signal(m, key) for m in metrics))
        table.add_row(
            f"{kind} ECE ({bins} equal-mass bins)",
            *(_extra_est(index, ev, "ece_equal_mass") for ev in evaluations),
        )
        table.add_row(
            f"{kind} share p >= 0.999",
            *("n/a" if m is None else f"{m.share_at_0999:.3f}" for m in metrics),
        )
    return table


def profile_table(profile: CalibrationProfile) -> Table:
    table = Table(title="calibration profile", header_style="bold")
    table.add_column("field")
    table.add_column("value")
    table.add_row("profile id", profile.profile_id)
    table.add_row("served model", safe(profile.served_model))
    table.add_row("fingerprint", safe(profile.system_fingerprint or "-"))
    params = profile.calibrator.model_dump(exclude={"kind", "x", "y"})
    table.add_row("calibrator", f"{profile.calibrator.kind} {params or ''}".strip())
    for c in profile.candidates:
        value = _num(c.heldout_nll) if c.heldout_nll is not None else (c.note or "skipped")
        table.add_row(f"  held-out NLL {c.kind}", value)
    threshold = profile.auto_action_threshold
    rule = (
        f"{profile.confidence:.0%} lower bound of precision >= {profile.target_precision}"
        if profile.precision_bound == "wilson"
        else f"precision >= {profile.target_precision}"
    )
    table.add_row(
        f"auto-action threshold ({rule})",
        "never (no threshold reaches it)" if threshold is None else f"{threshold:.4f}",
    )
    if profile.threshold_support is not None:
        table.add_row(
            "  held-out units it actions",
            f"{profile.threshold_support}: precision {_num(profile.threshold_precision)}, "
            f"lower bound {_num(profile.threshold_precision_low)}",
        )
    table.add_row("informative", "yes" if profile.informative else "NO")
    for reason in profile.collapse.reasons:
        table.add_row("  reason", safe(reason))
    table.add_row("signal units fitted on", str(profile.n_items))
    for key in _SIGNAL_ROWS:
        table.add_row(
            f"{key.upper()} raw -> calibrated (out-of-fold)",
            f"{_est(getattr(profile.metrics_raw, key))} -> "
            f"{_est(getattr(profile.metrics_calibrated, key))}",
        )
    return table


def gate_table(result: GateResult, old: str, new: str) -> Table:
    verdict = "PASS" if result.passed else "FAIL"
    table = Table(title=f"upgrade gate: {verdict}", header_style="bold")
    table.add_column("check")
    table.add_column(safe(old), justify="right")
    table.add_column(safe(new), justify="right")
    table.add_row(
        f"precision at coverage {result.rule.coverage} (tolerance {result.rule.tolerance})",
        f"{_num(result.old_precision)} @ {_num(result.old_coverage, 3)}",
        f"{_num(result.new_precision)} @ {_num(result.new_coverage, 3)}",
    )
    check = result.new_check
    table.add_row("new signal informative", "", "n/a" if check is None else str(check.informative))
    for reason in result.reasons:
        table.add_row("failed", "", safe(reason))
    return table
