"""Calibration metrics for binary verdict probabilities, pure numpy.

Every function takes `p`, the probability that a finding's verdict is true, and `y`, whether
it really was (1) or not (0). Calibration error is measured on `p` itself (the positive
class), the convention of scikit-learn's `calibration_curve`, so our bins match its bins.

Bins are right-closed, `(lower, upper]`, the first one also holding 0: a probability on an
edge goes to the lower bin. This is what `np.searchsorted` on the interior edges does, and
what scikit-learn does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from pipeline.defaults import (
    DEFAULT_BINS,
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    PrecisionBound,
)
from pipeline.models import Frozen

FloatArray = npt.NDArray[np.float64]
BinStrategy = Literal["uniform", "quantile"]
MetricFn = Callable[[FloatArray, FloatArray], float | None]

#: Same clip as scikit-learn's `log_loss`, so our NLL agrees with it: a confidently wrong
#: p = 1.0 costs ~36 nats instead of infinity.
NLL_EPS = float(np.finfo(np.float64).eps)
#: Clip before logit: keeps logit(1.0) finite (~20.7) for a collapsed model whose every
#: verdict logprob is 0, while still separating logprobs down to about -1e-9.
LOGIT_EPS = 1e-9
#: The "everything is certain" mark used by collapse checks and reports.
TOP_P = 0.999
#: Fewest auto-actioned items a threshold may rest on: below ~30, one mistake moves the
#: measured precision by more than 3 points, so a "95%" threshold would be luck.
MIN_SUPPORT = 30


def as_arrays(p: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate and convert to float arrays; reject what would silently poison a metric."""
    pa = np.asarray(p, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if pa.ndim != 1 or ya.ndim != 1 or pa.shape != ya.shape:
        raise ValueError(f"p and y must be 1-D of equal length, got {pa.shape} and {ya.shape}")
    if pa.size == 0:
        raise ValueError("no items: metrics of an empty set are undefined")
    if not np.all(np.isfinite(pa)) or pa.min() < 0.0 or pa.max() > 1.0:
        raise ValueError("p must hold finite probabilities in [0, 1]")
    if not np.all((ya == 0.0) | (ya == 1.0)):
        raise ValueError("y must hold binary labels 0/1")
    return pa, ya


def as_probs(p: npt.ArrayLike) -> FloatArray:
    """Validate probabilities alone (no labels), as calibrators and live checks see them."""
    pa = np.asarray(p, dtype=np.float64)
    if pa.ndim != 1:
        raise ValueError(f"p must be 1-D, got shape {pa.shape}")
    if not np.all(np.isfinite(pa)) or (pa.size and (pa.min() < 0.0 or pa.max() > 1.0)):
        raise ValueError("p must hold finite probabilities in [0, 1]")
    return pa


def logit(p: FloatArray, eps: float = LOGIT_EPS) -> FloatArray:
    """log(p / (1 - p)) after clipping to [eps, 1 - eps], so 0 and 1 stay finite."""
    pc = np.clip(p, eps, 1.0 - eps)
    return np.asarray(np.log(pc) - np.log1p(-pc), dtype=np.float64)


# ----------------------------------------------------------------------------- binning


def bin_edges(p: FloatArray, n_bins: int, strategy: BinStrategy) -> FloatArray:
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if strategy == "quantile":
        # Ties (a collapsed model) give repeated edges and so empty bins; they are skipped.
        # linspace(0, 1) * 100, not linspace(0, 100): the float rounding scikit-learn uses,
        # so an item sitting on an edge lands in the same bin as in `calibration_curve`.
        q = np.linspace(0.0, 1.0, n_bins + 1) * 100.0
        return np.asarray(np.percentile(p, q), dtype=np.float64)
    raise ValueError(f"unknown bin strategy {strategy!r}: use 'uniform' or 'quantile'")


def _bin_sums(
    p: FloatArray, y: FloatArray, n_bins: int, strategy: BinStrategy
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Edges, and per bin: item count, sum of p, sum of y."""
    edges = bin_edges(p, n_bins, strategy)
    ids = np.searchsorted(edges[1:-1], p)
    count = np.bincount(ids, minlength=n_bins).astype(np.float64)
    sum_p = np.asarray(np.bincount(ids, weights=p, minlength=n_bins), dtype=np.float64)
    sum_y = np.asarray(np.bincount(ids, weights=y, minlength=n_bins), dtype=np.float64)
    return edges, count, sum_p, sum_y


class ReliabilityBin(Frozen):
    """One bin of a reliability diagram; means are None for an empty bin."""

    lower: float
    upper: float
    count: int
    mean_confidence: float | None
    accuracy: float | None = Field(description="Share of items in the bin whose verdict held.")


def reliability_bins(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> list[ReliabilityBin]:
    pa, ya = as_arrays(p, y)
    edges, count, sum_p, sum_y = _bin_sums(pa, ya, n_bins, strategy)
    return [
        ReliabilityBin(
            lower=float(edges[i]),
            upper=float(edges[i + 1]),
            count=int(count[i]),
            mean_confidence=float(sum_p[i] / count[i]) if count[i] else None,
            accuracy=float(sum_y[i] / count[i]) if count[i] else None,
        )
        for i in range(n_bins)
    ]


# ----------------------------------------------------------------------------- metrics
# Each metric has an unchecked core (`_ece`, ...) that the bootstrap calls a thousand times,
# and a public wrapper that validates its input once.


def _ece(p: FloatArray, y: FloatArray, n_bins: int, strategy: BinStrategy) -> float:
    _, _, sum_p, sum_y = _bin_sums(p, y, n_bins, strategy)
    # (n_b / N) * |sum_y/n_b - sum_p/n_b| simplifies to |sum_y - sum_p| / N.
    return float(np.abs(sum_y - sum_p).sum() / p.size)


def _mce(p: FloatArray, y: FloatArray, n_bins: int, strategy: BinStrategy) -> float:
    _, count, sum_p, sum_y = _bin_sums(p, y, n_bins, strategy)
    full = count > 0
    return float(np.max(np.abs(sum_y[full] - sum_p[full]) / count[full]))


def _sce(p: FloatArray, y: FloatArray, n_bins: int, strategy: BinStrategy) -> float:
    return (_ece(p, y, n_bins, strategy) + _ece(1.0 - p, 1.0 - y, n_bins, strategy)) / 2.0


def _brier(p: FloatArray, y: FloatArray) -> float:
    return float(np.mean((p - y) ** 2))


def _nll(p: FloatArray, y: FloatArray) -> float:
    pc = np.clip(p, NLL_EPS, 1.0 - NLL_EPS)
    return float(-np.mean(y * np.log(pc) + (1.0 - y) * np.log1p(-pc)))


def _average_ranks(a: FloatArray) -> FloatArray:
    """1-based ranks, ties sharing their mean rank (scipy's rankdata, without importing
    scipy.stats: a second of start-up for one function)."""
    order = np.argsort(a, kind="stable")
    s = a[order]
    first = np.append(True, s[1:] != s[:-1])
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], a.size)
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[np.cumsum(first) - 1]
    return ranks


def _roc_auc(p: FloatArray, y: FloatArray) -> float | None:
    n_pos = float(y.sum())
    n_neg = float(y.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(p)
    return float((ranks[y == 1.0].sum() - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg))


def ece(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> float:
    """Expected calibration error: sum over bins of (n_b / N) * |accuracy_b - confidence_b|."""
    return _ece(*as_arrays(p, y), n_bins, strategy)


def mce(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> float:
    """Maximum calibration error: the worst non-empty bin's |accuracy - confidence|."""
    return _mce(*as_arrays(p, y), n_bins, strategy)


def sce(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    strategy: BinStrategy = "uniform",
) -> float:
    """Static (class-wise) calibration error: mean over both classes of that class's ECE.

    For a binary problem the class-0 view (1 - p against 1 - y) mirrors the class-1 view, so
    this equals `ece` except for items sitting exactly on a bin edge. It is kept because it
    is the metric the multi-class literature reports (Nixon et al., 2019).
    """
    return _sce(*as_arrays(p, y), n_bins, strategy)


def brier(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean squared error of p against the 0/1 outcome."""
    return _brier(*as_arrays(p, y))


def nll(p: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Mean negative log-likelihood in nats, p clipped to [NLL_EPS, 1 - NLL_EPS]."""
    return _nll(*as_arrays(p, y))


def roc_auc(p: npt.ArrayLike, y: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count half); None with only one class."""
    return _roc_auc(*as_arrays(p, y))


def share_at(p: npt.ArrayLike, threshold: float = TOP_P) -> float:
    """Share of probabilities at or above `threshold` (collapse shows as this going to 1)."""
    pa = as_probs(p)
    if pa.size == 0:
        raise ValueError("no items")
    return float(np.mean(pa >= threshold))


# ----------------------------------------------------------------------------- actioning


@dataclass(frozen=True)
class PrecisionCoverage:
    """Auto-actioning everything with p >= thresholds[i] covers coverage[i] at precision[i].

    Thresholds are the distinct values of p, highest first: items tied on p cannot be split
    by any threshold, so the curve only has points between tie groups.
    """

    thresholds: FloatArray
    coverage: FloatArray
    precision: FloatArray
    support: npt.NDArray[np.int64]

    def precision_low(self, confidence: float = DEFAULT_CONFIDENCE) -> FloatArray:
        """Wilson lower bound of each point's precision: what the set can vouch for."""
        return wilson_lower_bound(self.precision * self.support, self.support, confidence)


def wilson_lower_bound(
    successes: npt.ArrayLike, trials: npt.ArrayLike, confidence: float = DEFAULT_CONFIDENCE
) -> FloatArray:
    """Lower end of the Wilson score interval of a binomial proportion, element-wise.

    scipy has it one proportion at a time (`binomtest(...).proportion_ci(method="wilson")`,
    what the tests compare with); a precision curve needs it at every threshold at once.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)  # stdlib: metrics need not load scipy
    with np.errstate(invalid="ignore", divide="ignore"):
        phat = k / n
        centre = phat + z * z / (2 * n)
        margin = z * np.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
        low = (centre - margin) / (1 + z * z / n)
    return np.where(n > 0, np.clip(low, 0.0, 1.0), 0.0)


def precision_coverage(p: npt.ArrayLike, y: npt.ArrayLike) -> PrecisionCoverage:
    pa, ya = as_arrays(p, y)
    order = np.argsort(-pa, kind="stable")
    ps, ys = pa[order], ya[order]
    # The last position of each run of equal p: where the next value differs, and the end.
    ends = np.flatnonzero(np.append(ps[1:] != ps[:-1], True))
    support = ends + 1
    true_pos = np.cumsum(ys)[ends]
    return PrecisionCoverage(
        thresholds=ps[ends],
        coverage=support / pa.size,
        precision=true_pos / support,
        support=support.astype(np.int64),
    )


def threshold_for_precision(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    target: float,
    min_support: int = MIN_SUPPORT,
    *,
    bound: PrecisionBound = "wilson",
    confidence: float = DEFAULT_CONFIDENCE,
) -> float | None:
    """Smallest t such that the items with p >= t number >= min_support and reach `target`
    precision; None if no threshold does (never auto-action).

    With `bound="wilson"` the precision that must reach the target is the lower end of its
    `confidence` interval: 40 correct out of 40 is a point precision of 1.0 but vouches for
    only 0.91, and a team that asked for 0.95 should not get auto-actions on that. "point"
    takes the measured precision as it is.

    Smallest, because it actions the most items; the precision of the whole set above it is
    what must meet the target, even if some narrower set above it falls short.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError("target precision must be in (0, 1]")
    if bound not in ("wilson", "point"):
        raise ValueError(f"bound must be 'wilson' or 'point', not {bound!r}")
    if bound == "wilson" and target >= 1.0:
        raise ValueError("no finite set vouches for a precision of 1.0: aim lower, or use point")
    curve = precision_coverage(p, y)
    precision = curve.precision_low(confidence) if bound == "wilson" else curve.precision
    ok = (precision >= target) & (curve.support >= min_support)
    if not ok.any():
        return None
    return float(curve.thresholds[np.flatnonzero(ok)[-1]])


@dataclass(frozen=True)
class ActionedSet:
    """What auto-actioning every item with p >= a threshold does on a labelled set."""

    support: int
    precision: float
    precision_low: float


def actioned_set(
    p: npt.ArrayLike, y: npt.ArrayLike, threshold: float, confidence: float = DEFAULT_CONFIDENCE
) -> ActionedSet:
    pa, ya = as_arrays(p, y)
    chosen = pa >= threshold
    n = int(chosen.sum())
    correct = float(ya[chosen].sum())
    low = float(wilson_lower_bound(correct, n, confidence))
    return ActionedSet(support=n, precision=correct / n if n else 0.0, precision_low=low)


# ----------------------------------------------------------------------------- uncertainty

#: Resampled items held at once (rows x items): a large golden set bootstraps in chunks whose
#: arrays are ~16 MB each, instead of n_bootstrap x N all at once.
_CHUNK_CELLS = 2_000_000


def _percentile_ci(values: npt.ArrayLike, alpha: float) -> tuple[float | None, float | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return None, None
    low, high = np.percentile(v, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return float(low), float(high)


def _resample_chunks(n_items: int, n: int, seed: int) -> Iterator[npt.NDArray[np.int64]]:
    """The bootstrap resamples (rows of item indices), the same for a seed whoever asks."""
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n_items)
    for start in range(0, n, rows):
        yield rng.integers(0, n_items, size=(min(rows, n - start), n_items), dtype=np.int64)


def bootstrap_ci(
    metric_fn: MetricFn,
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    n: int = DEFAULT_BOOTSTRAP,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float | None, float | None, float | None]:
    """(point, low, high): the metric on the data and a percentile bootstrap interval.

    Resamples where the metric is undefined (AUC of a one-class resample) are skipped.
    """
    pa, ya = as_arrays(p, y)
    point = metric_fn(pa, ya)
    if point is None:
        return None, None, None
    values = [
        np.nan if (v := metric_fn(pa[i], ya[i])) is None else v
        for chunk in _resample_chunks(pa.size, n, seed)
        for i in chunk
    ]
    return (point, *_percentile_ci(values, alpha))


class _Resampled:
    """Every summary metric over many resamples at once, for `summarize`.

    A resample is a row of counts over the original items, so sums over it are one matrix
    product: a thousand resamples cost about as much as a few calls of the plain metric.
    Undefined values (AUC of a one-class resample) come back as NaN.
    """

    def __init__(self, p: FloatArray, y: FloatArray, n_bins: int, strategy: BinStrategy) -> None:
        self.p, self.y, self.n_bins, self.strategy = p, y, n_bins, strategy
        pc = np.clip(p, NLL_EPS, 1.0 - NLL_EPS)
        self.sq = (p - y) ** 2
        self.loss = -(y * np.log(pc) + (1.0 - y) * np.log1p(-pc))
        # Uniform edges do not depend on the data, so each item's bin is fixed: one-hot it.
        edges = bin_edges(p, n_bins, "uniform")[1:-1]
        hot1 = np.eye(n_bins)[np.searchsorted(edges, p)]
        hot0 = np.eye(n_bins)[np.searchsorted(edges, 1.0 - p)]
        self.bins = np.hstack(
            [
                hot1,
                hot1 * p[:, None],
                hot1 * y[:, None],
                hot0 * (1 - p)[:, None],
                hot0 * (1 - y)[:, None],
            ]
        )
        order = np.argsort(p, kind="stable")
        sorted_p = p[order]
        self.order = order
        self.tie_starts = np.flatnonzero(np.append(True, sorted_p[1:] != sorted_p[:-1]))
        self.sorted_y = y[order]

    def __call__(self, idx: npt.NDArray[np.int64]) -> dict[str, FloatArray]:
        k, n = idx.shape
        flat = (np.arange(k)[:, None] * n + idx).ravel()
        w = np.bincount(flat, minlength=k * n).reshape(k, n).astype(np.float64)
        out = {"brier": w @ self.sq / n, "nll": w @ self.loss / n, "auc": self._auc(w)}
        if self.strategy == "uniform":
            count, sp, sy, sp0, sy0 = np.split(w @ self.bins, 5, axis=1)
            gap = np.abs(sy - sp)
            out["ece"] = gap.sum(axis=1) / n
            out["mce"] = np.where(count > 0, gap / np.maximum(count, 1.0), -np.inf).max(axis=1)
            out["sce"] = (out["ece"] + np.abs(sy0 - sp0).sum(axis=1) / n) / 2.0
        else:  # quantile edges move with each resample: no shortcut, one row at a time
            for name, fn in (("ece", _ece), ("mce", _mce), ("sce", _sce)):
                out[name] = np.array(
                    [fn(self.p[i], self.y[i], self.n_bins, self.strategy) for i in idx]
                )
        return out

    def _auc(self, w: FloatArray) -> FloatArray:
        """Weighted Mann-Whitney: each positive beats the negatives below it, ties half."""
        ws = w[:, self.order]
        pos = np.add.reduceat(ws * self.sorted_y, self.tie_starts, axis=1)
        neg = np.add.reduceat(ws * (1.0 - self.sorted_y), self.tie_starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        auc = np.divide(wins, pairs, out=np.full_like(wins, np.nan), where=pairs > 0)
        return np.asarray(auc, dtype=np.float64)


# ----------------------------------------------------------------------------- summary


class Estimate(Frozen):
    """A metric's value on the data and its bootstrap interval (None where undefined)."""

    value: float | None
    low: float | None
    high: float | None


class SignalMetrics(Frozen):
    """Everything `quoteguard eval` reports about one signal on one labelled set."""

    n: int
    n_positive: int
    n_bins: int
    strategy: BinStrategy
    ci_level: float = Field(description="Coverage of every interval, e.g. 0.95.")
    n_bootstrap: int
    seed: int
    ece: Estimate
    mce: Estimate
    sce: Estimate
    brier: Estimate
    nll: Estimate
    auc: Estimate = Field(description="value None when only one class is present.")
    share_at_0999: float = Field(description="Share of p >= 0.999: near 1 means collapse.")


def summarize(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    n_bins: int = DEFAULT_BINS,
    seed: int = 0,
    *,
    strategy: BinStrategy = "uniform",
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    alpha: float = 0.05,
) -> SignalMetrics:
    pa, ya = as_arrays(p, y)
    points: dict[str, float | None] = {
        "ece": _ece(pa, ya, n_bins, strategy),
        "mce": _mce(pa, ya, n_bins, strategy),
        "sce": _sce(pa, ya, n_bins, strategy),
        "brier": _brier(pa, ya),
        "nll": _nll(pa, ya),
        "auc": _roc_auc(pa, ya),
    }
    # One set of resamples for every metric (the same `bootstrap_ci` draws for this seed):
    # cheaper, and the intervals of different metrics are comparable.
    resampled = _Resampled(pa, ya, n_bins, strategy)
    chunks = [resampled(idx) for idx in _resample_chunks(pa.size, n_bootstrap, seed)]
    est: dict[str, Estimate] = {}
    for name, point in points.items():
        values = np.concatenate([c[name] for c in chunks])
        low, high = (None, None) if point is None else _percentile_ci(values, alpha)
        est[name] = Estimate(value=point, low=low, high=high)
    return SignalMetrics(
        n=int(pa.size),
        n_positive=int(ya.sum()),
        n_bins=n_bins,
        strategy=strategy,
        ci_level=1.0 - alpha,
        n_bootstrap=n_bootstrap,
        seed=seed,
        ece=est["ece"],
        mce=est["mce"],
        sce=est["sce"],
        brier=est["brier"],
        nll=est["nll"],
        auc=est["auc"],
        share_at_0999=share_at(pa, TOP_P),
    )
