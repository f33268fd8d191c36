"""Calibrators: maps from a raw verdict probability to a calibrated one.

Each calibrator fits on labelled (p, y), predicts on new p, and round-trips through a small
pydantic params model that serialises to plain JSON, so a profile file restores it exactly
without pickle (a pickle in a config directory is code execution waiting to happen).

Temperature and Platt scaling work on logit(p), clipped first: a collapsed model gives
p = 1.0 for everything, and logit(1.0) must be finite for the fit to run at all.

scipy.optimize and scikit-learn are imported inside the fitting code: they take ~1.5 s to
import, and a worker that only applies a profile's calibrator never fits one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, FiniteFloat, model_validator
from scipy.special import expit, log_expit

from pipeline.calibration.metrics import FloatArray, as_arrays, as_probs, logit, nll
from pipeline.models import Frozen

CalibratorKind = Literal["identity", "temperature", "platt", "isotonic"]

#: Temperature search range, log scale: wide enough for any real model, bounded so a
#: degenerate fit (one class, or a collapsed signal) stops at a finite value.
_LOG_T_BOUNDS = (np.log(1e-2), np.log(1e2))
#: Items needed before isotonic regression is even tried: with fewer, its steps fit noise and
#: its held-out predictions hit exactly 0 or 1.
MIN_ISOTONIC = 200
DEFAULT_FOLDS = 5

# ----------------------------------------------------------------------------- params


class IdentityParams(Frozen):
    kind: Literal["identity"] = "identity"


class TemperatureParams(Frozen):
    kind: Literal["temperature"] = "temperature"
    temperature: FiniteFloat = Field(gt=0)


class PlattParams(Frozen):
    kind: Literal["platt"] = "platt"
    slope: FiniteFloat
    intercept: FiniteFloat


class IsotonicParams(Frozen):
    """The fitted step function: predictions interpolate linearly between (x[i], y[i])."""

    kind: Literal["isotonic"] = "isotonic"
    x: list[FiniteFloat] = Field(min_length=1)
    y: list[FiniteFloat] = Field(min_length=1)

    @model_validator(mode="after")
    def _monotone(self) -> Self:
        if len(self.x) != len(self.y):
            raise ValueError("isotonic x and y must have the same length")
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("isotonic x must be non-decreasing")
        if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)):
            raise ValueError("isotonic y must be non-decreasing")
        if self.y[0] < 0.0 or self.y[-1] > 1.0:
            raise ValueError("isotonic y must lie in [0, 1]")
        return self


CalibratorParams = Annotated[
    IdentityParams | TemperatureParams | PlattParams | IsotonicParams,
    Field(discriminator="kind"),
]

# ----------------------------------------------------------------------------- calibrators


class Calibrator(ABC):
    kind: ClassVar[CalibratorKind]

    @abstractmethod
    def fit(self, p: npt.ArrayLike, y: npt.ArrayLike) -> Self: ...

    @abstractmethod
    def _predict(self, p: FloatArray) -> FloatArray: ...

    @abstractmethod
    def to_params(self) -> IdentityParams | TemperatureParams | PlattParams | IsotonicParams: ...

    def predict(self, p: npt.ArrayLike) -> FloatArray:
        """Calibrated probabilities, same shape as `p` (1-D)."""
        return np.clip(self._predict(as_probs(p)), 0.0, 1.0)


class Identity(Calibrator):
    """No calibration: the baseline every other candidate must beat on held-out data."""

    kind = "identity"

    def fit(self, p: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        as_arrays(p, y)
        return self

    def _predict(self, p: FloatArray) -> FloatArray:
        return p

    def to_params(self) -> IdentityParams:
        return IdentityParams()

    @classmethod
    def from_params(cls, params: IdentityParams) -> Identity:
        del params  # nothing to restore
        return cls()


class TemperatureScaling(Calibrator):
    """p' = sigmoid(logit(p) / T): one parameter, keeps the ranking, fixes over-confidence."""

    kind = "temperature"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def fit(self, p: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        from scipy.optimize import minimize_scalar  # noqa: PLC0415  (lazy: module docstring)

        pa, ya = as_arrays(p, y)
        z = logit(pa)
        sign = 2.0 * ya - 1.0

        def loss(log_t: float) -> float:
            # -log sigmoid(+-z/T), written with log_expit so it cannot overflow.
            return float(-np.mean(log_expit(sign * z / np.exp(log_t))))

        res = minimize_scalar(loss, bounds=_LOG_T_BOUNDS, method="bounded")
        self.temperature = float(np.exp(res.x))
        return self

    def _predict(self, p: FloatArray) -> FloatArray:
        return np.asarray(expit(logit(p) / self.temperature), dtype=np.float64)

    def to_params(self) -> TemperatureParams:
        return TemperatureParams(temperature=self.temperature)

    @classmethod
    def from_params(cls, params: TemperatureParams) -> TemperatureScaling:
        return cls(params.temperature)


class PlattScaling(Calibrator):
    """p' = sigmoid(a * logit(p) + b), fitted with Platt's smoothed targets.

    The smoothed targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) are Platt's (1999) guard against
    a perfectly separable set driving the slope to infinity.
    """

    kind = "platt"

    def __init__(self, slope: float = 1.0, intercept: float = 0.0) -> None:
        self.slope = slope
        self.intercept = intercept

    def fit(self, p: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        from scipy.optimize import minimize  # noqa: PLC0415  (lazy: module docstring)

        pa, ya = as_arrays(p, y)
        z = logit(pa)
        n_pos = float(ya.sum())
        n_neg = float(ya.size) - n_pos
        t = np.where(ya == 1.0, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

        def loss(w: FloatArray) -> tuple[float, FloatArray]:
            s = w[0] * z + w[1]
            value = -np.mean(t * log_expit(s) + (1.0 - t) * log_expit(-s))
            resid = expit(s) - t
            return float(value), np.array([np.mean(resid * z), np.mean(resid)])

        res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
        self.slope, self.intercept = float(res.x[0]), float(res.x[1])
        return self

    def _predict(self, p: FloatArray) -> FloatArray:
        return np.asarray(expit(self.slope * logit(p) + self.intercept), dtype=np.float64)

    def to_params(self) -> PlattParams:
        return PlattParams(slope=self.slope, intercept=self.intercept)

    @classmethod
    def from_params(cls, params: PlattParams) -> PlattScaling:
        return cls(params.slope, params.intercept)


class IsotonicCalibrator(Calibrator):
    """Monotone step function fitted by scikit-learn; predicts by interpolating its knots.

    Prediction is `np.interp` over the stored knots, which is what IsotonicRegression with
    out_of_bounds="clip" computes, so a restored calibrator needs no scikit-learn object.
    """

    kind = "isotonic"

    def __init__(self, x: npt.ArrayLike | None = None, y: npt.ArrayLike | None = None) -> None:
        self.x: FloatArray | None = None if x is None else np.asarray(x, dtype=np.float64)
        self.y: FloatArray | None = None if y is None else np.asarray(y, dtype=np.float64)

    def fit(self, p: npt.ArrayLike, y: npt.ArrayLike) -> Self:
        from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415  (lazy: module docstring)

        pa, ya = as_arrays(p, y)
        # Fitted on p itself: isotonic regression is invariant to monotone transforms, and
        # knots in probability space are readable in the profile file.
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(pa, ya)
        self.x = np.asarray(iso.X_thresholds_, dtype=np.float64)
        self.y = np.asarray(iso.y_thresholds_, dtype=np.float64)
        return self

    def _predict(self, p: FloatArray) -> FloatArray:
        if self.x is None or self.y is None:
            raise RuntimeError("IsotonicCalibrator used before fit")
        return np.asarray(np.interp(p, self.x, self.y), dtype=np.float64)

    def to_params(self) -> IsotonicParams:
        if self.x is None or self.y is None:
            raise RuntimeError("IsotonicCalibrator used before fit")
        return IsotonicParams(x=self.x.tolist(), y=self.y.tolist())

    @classmethod
    def from_params(cls, params: IsotonicParams) -> IsotonicCalibrator:
        return cls(params.x, params.y)


def from_params(
    params: IdentityParams | TemperatureParams | PlattParams | IsotonicParams,
) -> Calibrator:
    """Rebuild the calibrator a params model describes (as read from a profile)."""
    match params:
        case IdentityParams():
            return Identity.from_params(params)
        case TemperatureParams():
            return TemperatureScaling.from_params(params)
        case PlattParams():
            return PlattScaling.from_params(params)
        case IsotonicParams():
            return IsotonicCalibrator.from_params(params)


# ----------------------------------------------------------------------------- selection

#: Candidates from simplest to most flexible; on a tie in held-out NLL the simpler one wins.
CANDIDATES: dict[CalibratorKind, type[Calibrator]] = {
    "identity": Identity,
    "temperature": TemperatureScaling,
    "platt": PlattScaling,
    "isotonic": IsotonicCalibrator,
}


class CandidateScore(Frozen):
    """One row of the selection table: a candidate's out-of-fold NLL, or why it was skipped."""

    kind: CalibratorKind
    heldout_nll: float | None
    note: str | None = None


@dataclass(frozen=True)
class Selection:
    """The chosen calibrator (refitted on all items) and the evidence for choosing it.

    `heldout_p` are the chosen kind's out-of-fold predictions: every item calibrated by a
    model that never saw it, which is what honest calibrated metrics and thresholds need.
    """

    calibrator: Calibrator
    table: list[CandidateScore]
    heldout_p: FloatArray
    n_folds: int


def fit_best(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    seed: int = 0,
    min_isotonic: int = MIN_ISOTONIC,
    n_folds: int = DEFAULT_FOLDS,
) -> Selection:
    """Pick the calibrator with the lowest stratified k-fold held-out NLL, refit on all."""
    from sklearn.model_selection import StratifiedKFold  # noqa: PLC0415  (lazy: module docstring)

    pa, ya = as_arrays(p, y)
    smallest_class = int(min(ya.sum(), ya.size - ya.sum()))
    if smallest_class < 2:
        raise ValueError(
            "choosing a calibrator needs at least 2 items of each class, "
            f"got {int(ya.sum())} true and {int(ya.size - ya.sum())} false"
        )
    # More folds than items of the rarer class would leave a fold without it.
    k = min(n_folds, smallest_class)
    folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(pa, ya))

    table: list[CandidateScore] = []
    heldout: dict[CalibratorKind, FloatArray] = {}
    for kind, cls in CANDIDATES.items():
        if kind == "isotonic" and pa.size < min_isotonic:
            note = f"skipped: {pa.size} items < {min_isotonic}"
            table.append(CandidateScore(kind=kind, heldout_nll=None, note=note))
            continue
        oof = np.empty_like(pa)
        for train, test in folds:
            oof[test] = cls().fit(pa[train], ya[train]).predict(pa[test])
        heldout[kind] = oof
        table.append(CandidateScore(kind=kind, heldout_nll=nll(oof, ya)))

    scores = {row.kind: row.heldout_nll for row in table if row.heldout_nll is not None}
    best = min(scores, key=scores.__getitem__)  # min keeps the first (simplest) on ties
    return Selection(
        calibrator=CANDIDATES[best]().fit(pa, ya),
        table=table,
        heldout_p=heldout[best],
        n_folds=k,
    )
