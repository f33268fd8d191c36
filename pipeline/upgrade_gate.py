"""The upgrade gate: may the NEW model version replace the OLD one? A pure function.

Both versions are evaluated on the same golden set (`pipeline.evaluation`), signal units as
defined in `pipeline.scoring`. The new version fails when either holds:

1. signal_collapsed: its raw signal is not informative (`signal_informative`: too few
   units, probabilities flat, or AUC below the minimum). Its logprobs could then never earn
   automatic actions, whatever its accuracy.
2. precision_fell: among its most confident units covering `coverage` of them, precision is
   lower than the old version's at the same coverage by more than `tolerance` (absolute).
   Raw p_true ranks the units: any calibrator is monotone, so it would rank them alike, and
   the gate must not depend on which profiles happen to exist.

The default tolerance of 0.02 is about one standard error of a precision near 0.95 measured
on ~100 units; on a smaller golden set, raise it or add items, or the gate flips on noise.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from pipeline.calibration import CollapseCheck, signal_informative
from pipeline.defaults import DEFAULT_COVERAGE, DEFAULT_TOLERANCE
from pipeline.models import Frozen
from pipeline.scoring import precision_at_coverage


class GateRule(Frozen):
    coverage: float = Field(default=DEFAULT_COVERAGE, gt=0, le=1)
    tolerance: float = Field(default=DEFAULT_TOLERANCE, ge=0, le=1)


class GateResult(Frozen):
    passed: bool
    reasons: list[str] = Field(description="Each failed rule, named and explained.")
    rule: GateRule
    old_precision: float | None
    new_precision: float | None
    old_coverage: float | None = Field(description="Coverage reached (ties may overshoot).")
    new_coverage: float | None
    new_check: CollapseCheck | None = Field(description="None: the new version had no units.")


def gate(
    old_p: Sequence[float],
    old_y: Sequence[int],
    new_p: Sequence[float],
    new_y: Sequence[int],
    rule: GateRule | None = None,
) -> GateResult:
    """Whether the new version passes, and every reason it does not."""
    rule = rule or GateRule()
    reasons: list[str] = []
    check = signal_informative(new_p, new_y) if len(new_p) else None
    if check is None:
        reasons.append("signal_collapsed: the new version produced no signal units")
    elif not check.informative:
        reasons.append(f"signal_collapsed: {'; '.join(check.reasons)}")
    old = precision_at_coverage(old_p, old_y, rule.coverage) if len(old_p) else None
    new = precision_at_coverage(new_p, new_y, rule.coverage) if len(new_p) else None
    if old is not None and new is not None and new.precision < old.precision - rule.tolerance:
        reasons.append(
            f"precision_fell: {new.precision:.4f} at coverage {new.coverage:.3f} vs "
            f"{old.precision:.4f} at {old.coverage:.3f} (tolerance {rule.tolerance})"
        )
    return GateResult(
        passed=not reasons,
        reasons=reasons,
        rule=rule,
        old_precision=old.precision if old else None,
        new_precision=new.precision if new else None,
        old_coverage=old.coverage if old else None,
        new_coverage=new.coverage if new else None,
        new_check=check,
    )
