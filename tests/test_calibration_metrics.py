"""Calibration metrics: hand-computed cases and agreement with scikit-learn."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

import pipeline.calibration as cal
from pipeline.calibration import metrics
from pipeline.calibration.metrics import (
    BinStrategy,
    FloatArray,
    SignalMetrics,
    bootstrap_ci,
    brier,
    ece,
    mce,
    nll,
    precision_coverage,
    reliability_bins,
    roc_auc,
    sce,
    share_at,
    summarize,
    threshold_for_precision,
)

# Four items, two bins: [0, .5] holds .1/.2 (one true), (.5, 1] holds .7/.9 (both true).
HAND_P = np.array([0.1, 0.2, 0.7, 0.9])
HAND_Y = np.array([0.0, 1.0, 1.0, 1.0])


def calibrated(n: int, seed: int) -> tuple[FloatArray, FloatArray]:
    """p ~ U(0, 1) and y ~ Bernoulli(p): calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < p).astype(np.float64)


def sharpened(p: FloatArray, factor: float) -> FloatArray:
    """Push probabilities towards 0 and 1 (an over-confident model)."""
    z = np.log(p) - np.log1p(-p)
    return np.asarray(1.0 / (1.0 + np.exp(-factor * z)), dtype=np.float64)


class TestValidation:
    @pytest.mark.parametrize(
        ("p", "y"),
        [
            ([0.5, 0.5], [1.0]),
            ([], []),
            ([0.5, 1.5], [0.0, 1.0]),
            ([0.5, -0.1], [0.0, 1.0]),
            ([0.5, float("nan")], [0.0, 1.0]),
            ([0.5, 0.5], [0.0, 2.0]),
            ([[0.5]], [[1.0]]),
        ],
    )
    def test_bad_input_is_refused(self, p: list[float], y: list[float]) -> None:
        """Mismatched, empty, out-of-range, NaN, non-binary or 2-D input raises ValueError."""
        with pytest.raises(ValueError, match=r"p |p and y|y must|no items"):
            ece(p, y)

    def test_unknown_strategy_is_refused(self) -> None:
        """A bin strategy other than uniform/quantile raises instead of guessing."""
        with pytest.raises(ValueError, match="unknown bin strategy"):
            ece(HAND_P, HAND_Y, strategy="kmeans")  # type: ignore[arg-type]


class TestCalibrationError:
    def test_ece_by_hand(self) -> None:
        """ECE is the count-weighted mean of |accuracy - confidence| over bins."""
        assert ece(HAND_P, HAND_Y, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.2)

    def test_mce_by_hand(self) -> None:
        """MCE is the worst bin's gap."""
        assert mce(HAND_P, HAND_Y, n_bins=2) == pytest.approx(0.35)

    def test_mce_ignores_empty_bins(self) -> None:
        """Empty bins have no gap, so they cannot be the worst."""
        assert mce([0.95, 0.95], [1.0, 1.0], n_bins=10) == pytest.approx(0.05)

    def test_sce_equals_ece_for_binary_off_the_edges(self) -> None:
        """For two classes the class-0 view mirrors class 1: SCE = ECE off bin edges."""
        p, y = calibrated(500, seed=3)
        assert sce(p, y) == pytest.approx(ece(p, y))

    def test_sce_by_hand_on_a_bin_edge(self) -> None:
        """An item on an edge lands in the lower bin for p but for 1 - p too: views differ."""
        p, y = np.array([0.5, 0.4]), np.array([1.0, 0.0])
        # class 1: both in [0, .5]: |0.5 - 0.45| = 0.05; class 0: 1-p = .5 -> bin 0 (gap .5),
        # .6 -> bin 1 (gap .4), each weighted 1/2 -> 0.45.
        assert ece(p, y, n_bins=2) == pytest.approx(0.05)
        assert sce(p, y, n_bins=2) == pytest.approx((0.05 + 0.45) / 2)

    def test_collapsed_signal_ece_is_the_error_rate(self) -> None:
        """With every p = 1.0 the ECE is exactly the share of spurious findings."""
        y = np.array([1.0, 0.0, 1.0, 0.0, 1.0])
        assert ece(np.ones(5), y) == pytest.approx(0.4)

    @pytest.mark.parametrize("seed", range(5))
    def test_calibrated_set_sits_at_the_noise_floor(self, seed: int) -> None:
        """A calibrated set scores below twice the 0.3*sqrt(bins/N) noise floor."""
        p, y = calibrated(5000, seed)
        assert ece(p, y, n_bins=15) < 2 * 0.3 * np.sqrt(15 / 5000)

    @pytest.mark.parametrize("seed", range(5))
    def test_overconfident_set_is_far_above_the_floor(self, seed: int) -> None:
        """Pushing p to the extremes lifts ECE well above the noise floor."""
        p, y = calibrated(5000, seed)
        assert ece(sharpened(p, 3.0), y, n_bins=15) > 5 * 0.3 * np.sqrt(15 / 5000)


class TestReliabilityBins:
    @pytest.mark.parametrize("strategy", ["uniform", "quantile"])
    @pytest.mark.parametrize("n_bins", [5, 15])
    def test_bins_match_sklearn_calibration_curve(self, strategy: BinStrategy, n_bins: int) -> None:
        """Non-empty bins' accuracy and confidence equal sklearn's calibration_curve."""
        p, y = calibrated(700, seed=1)
        p = np.round(p, 2)  # ties and values on the edges
        bins = [b for b in reliability_bins(p, y, n_bins, strategy) if b.count]
        prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
        accuracy = np.array([b.accuracy for b in bins], dtype=np.float64)
        confidence = np.array([b.mean_confidence for b in bins], dtype=np.float64)
        np.testing.assert_allclose(accuracy, prob_true)
        np.testing.assert_allclose(confidence, prob_pred)

    def test_bins_cover_every_item_and_report_empty_ones(self) -> None:
        """Counts add up to N; an empty bin has no means rather than a fake zero."""
        bins = reliability_bins(HAND_P, HAND_Y, n_bins=4)
        assert sum(b.count for b in bins) == 4
        empty = [b for b in bins if b.count == 0]
        assert empty
        assert all(b.accuracy is None and b.mean_confidence is None for b in empty)

    def test_ece_is_the_weighted_bin_gap(self) -> None:
        """ECE recomputed from the reliability bins is the same number."""
        p, y = calibrated(300, seed=2)
        bins = reliability_bins(p, y, 10, "quantile")
        gaps = sum(b.count * abs((b.accuracy or 0) - (b.mean_confidence or 0)) for b in bins)
        assert ece(p, y, 10, "quantile") == pytest.approx(gaps / 300)


class TestScores:
    def test_brier_by_hand(self) -> None:
        """Brier is the mean squared difference."""
        assert brier(HAND_P, HAND_Y) == pytest.approx((0.01 + 0.64 + 0.09 + 0.01) / 4)

    def test_brier_matches_sklearn(self) -> None:
        """Same number as sklearn's brier_score_loss."""
        p, y = calibrated(400, seed=4)
        assert brier(p, y) == pytest.approx(brier_score_loss(y, p))

    def test_nll_matches_sklearn_even_at_zero_and_one(self) -> None:
        """Same number as sklearn's log_loss, including clipped 0/1 probabilities."""
        p, y = calibrated(400, seed=5)
        p[:10], p[10:20] = 1.0, 0.0
        assert nll(p, y) == pytest.approx(log_loss(y, p))

    def test_nll_of_a_confident_mistake_is_finite(self) -> None:
        """p = 1.0 on a false item costs a large but finite loss, not infinity."""
        value = nll([1.0], [0.0])
        assert np.isfinite(value)
        assert value > 30


class TestRocAuc:
    def test_matches_sklearn_with_ties(self) -> None:
        """Rank-based AUC (ties half) equals sklearn's roc_auc_score."""
        p, y = calibrated(500, seed=6)
        p = np.round(p, 1)
        assert roc_auc(p, y) == pytest.approx(roc_auc_score(y, p))

    @pytest.mark.parametrize("label", [0.0, 1.0])
    def test_one_class_is_none(self, label: float) -> None:
        """With one class AUC is undefined, said as None."""
        assert roc_auc([0.2, 0.9], [label, label]) is None

    def test_flat_signal_is_a_coin(self) -> None:
        """Identical probabilities rank nothing: AUC 0.5."""
        assert roc_auc(np.ones(4), [0.0, 1.0, 0.0, 1.0]) == 0.5


class TestShareAt:
    def test_share_at_the_top(self) -> None:
        """Counts p >= threshold, boundary included."""
        assert share_at([0.999, 1.0, 0.5, 0.9989], 0.999) == 0.5


class TestPrecisionCoverage:
    def test_curve_by_hand_with_ties(self) -> None:
        """Points only between tie groups, highest threshold first."""
        curve = precision_coverage([0.9, 0.9, 0.8, 0.3], [1.0, 0.0, 1.0, 0.0])
        np.testing.assert_allclose(curve.thresholds, [0.9, 0.8, 0.3])
        np.testing.assert_allclose(curve.coverage, [0.5, 0.75, 1.0])
        np.testing.assert_allclose(curve.precision, [0.5, 2 / 3, 0.5])
        np.testing.assert_array_equal(curve.support, [2, 3, 4])


class TestThresholdForPrecision:
    P = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    Y = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])

    def test_smallest_threshold_reaching_target(self) -> None:
        """The lowest threshold whose actioned set is precise enough (most coverage)."""
        assert threshold_for_precision(self.P, self.Y, 0.8, min_support=1, bound="point") == 0.7
        assert threshold_for_precision(self.P, self.Y, 1.0, min_support=1, bound="point") == 0.9

    def test_minimum_support(self) -> None:
        """A precise set smaller than min_support does not count."""
        assert threshold_for_precision(self.P, self.Y, 1.0, min_support=4, bound="point") is None

    def test_unreachable_target_is_none(self) -> None:
        """No threshold reaching the target means never auto-action."""
        assert threshold_for_precision(self.P, 1.0 - self.Y, 0.9, min_support=1) is None

    def test_actioned_set_really_meets_target(self) -> None:
        """On a larger set, items at or above the threshold do reach the target precision,
        and the default (Wilson) threshold is at least as strict as the point one."""
        p, y = calibrated(2000, seed=7)
        t = threshold_for_precision(p, y, 0.9)
        assert t is not None
        chosen = y[p >= t]
        assert chosen.mean() >= 0.9
        assert chosen.size >= metrics.MIN_SUPPORT
        point = threshold_for_precision(p, y, 0.9, bound="point")
        assert point is not None
        assert t >= point

    def test_a_perfect_small_set_does_not_vouch_for_the_target(self) -> None:
        """40 correct of 40 is a point precision of 1.0 but a 95 % lower bound of 0.912:
        it earns a 0.95 threshold only when the point estimate is taken at its word; 100 of
        100 (lower bound 0.963) earns it either way."""
        p40, y40 = np.linspace(0.9, 1.0, 40), np.ones(40)
        assert threshold_for_precision(p40, y40, 0.95, bound="point") == 0.9
        assert threshold_for_precision(p40, y40, 0.95) is None
        assert threshold_for_precision(p40, y40, 0.9) == 0.9
        p100, y100 = np.linspace(0.9, 1.0, 100), np.ones(100)
        assert threshold_for_precision(p100, y100, 0.95) == 0.9

    @pytest.mark.parametrize(
        ("k", "n", "confidence"),
        [(40, 40, 0.95), (38, 40, 0.95), (0, 10, 0.95), (5, 5, 0.9), (950, 1000, 0.99)],
    )
    def test_wilson_bound_matches_scipy(self, k: int, n: int, confidence: float) -> None:
        """The vectorised bound equals scipy's one-at-a-time Wilson interval."""
        expected = stats.binomtest(k, n).proportion_ci(confidence, method="wilson").low
        assert metrics.wilson_lower_bound(k, n, confidence) == pytest.approx(expected, abs=1e-12)

    def test_wilson_bound_of_an_empty_set_is_zero(self) -> None:
        np.testing.assert_array_equal(metrics.wilson_lower_bound([0, 3], [0, 3]) > 0, [False, True])
        with pytest.raises(ValueError, match="confidence"):
            metrics.wilson_lower_bound(1, 2, confidence=1.0)

    @pytest.mark.parametrize("target", [0.0, 1.2])
    def test_target_out_of_range(self, target: float) -> None:
        """Targets outside (0, 1] are refused."""
        with pytest.raises(ValueError, match="target precision"):
            threshold_for_precision(self.P, self.Y, target)

    def test_unknown_bound_and_unreachable_wilson_target_are_refused(self) -> None:
        """A misspelt bound is not silently the laxer rule; a lower bound never reaches 1."""
        with pytest.raises(ValueError, match="bound"):
            threshold_for_precision(self.P, self.Y, 0.9, bound="Wilson")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match=r"1\.0"):
            threshold_for_precision(self.P, self.Y, 1.0)


class TestBootstrap:
    def test_interval_brackets_the_point_and_is_reproducible(self) -> None:
        """low <= point <= high, and the same seed gives the same interval."""
        p, y = calibrated(300, seed=8)
        point, low, high = bootstrap_ci(brier, p, y, n=200, seed=1)
        assert low is not None
        assert high is not None
        assert point is not None
        assert low <= point <= high
        assert bootstrap_ci(brier, p, y, n=200, seed=1) == (point, low, high)

    def test_undefined_point_gives_no_interval(self) -> None:
        """AUC of a one-class set: (None, None, None)."""
        assert bootstrap_ci(roc_auc, [0.2, 0.4], [1.0, 1.0], n=10) == (None, None, None)

    @pytest.mark.parametrize("strategy", ["uniform", "quantile"])
    @pytest.mark.parametrize("name", ["ece", "mce", "sce", "brier", "nll", "auc"])
    def test_summarize_intervals_equal_bootstrap_ci(self, name: str, strategy: BinStrategy) -> None:
        """summarize's vectorised bootstrap gives bootstrap_ci's interval for the same seed."""
        p, y = calibrated(120, seed=9)
        p[:6] = 1.0  # ties and the top edge
        fns: dict[str, Callable[[FloatArray, FloatArray], float | None]] = {
            "ece": lambda a, b: ece(a, b, 10, strategy),
            "mce": lambda a, b: mce(a, b, 10, strategy),
            "sce": lambda a, b: sce(a, b, 10, strategy),
            "brier": brier,
            "nll": nll,
            "auc": roc_auc,
        }
        m = summarize(p, y, n_bins=10, seed=3, strategy=strategy, n_bootstrap=150)
        est = getattr(m, name)
        expected = np.array(bootstrap_ci(fns[name], p, y, n=150, seed=3), dtype=np.float64)
        got = np.array([est.value, est.low, est.high], dtype=np.float64)
        np.testing.assert_allclose(got, expected, rtol=1e-9)


class TestSummarize:
    def test_states_its_settings_and_round_trips_json(self) -> None:
        """Bins, strategy, n and CI level are stated; the model survives JSON."""
        p, y = calibrated(200, seed=10)
        m = summarize(p, y, n_bins=10, seed=0, strategy="quantile", n_bootstrap=100)
        assert (m.n, m.n_bins, m.strategy, m.ci_level) == (200, 10, "quantile", 0.95)
        assert m.n_positive == int(y.sum())
        assert m.auc.value == pytest.approx(roc_auc_score(y, p))
        assert SignalMetrics.model_validate_json(m.model_dump_json()) == m
        json.loads(m.model_dump_json())

    def test_collapsed_signal(self) -> None:
        """All p = 1.0: share at 0.999 is 1 and AUC is a coin."""
        y = np.array([1.0, 0.0] * 50)
        m = summarize(np.ones(100), y, n_bootstrap=50)
        assert m.share_at_0999 == 1.0
        assert m.auc.value == 0.5

    def test_one_class_has_no_auc(self) -> None:
        """A one-class set reports AUC as None with no interval, other metrics intact."""
        m = summarize([0.2, 0.7, 0.9], [1.0, 1.0, 1.0], n_bootstrap=50)
        assert (m.auc.value, m.auc.low, m.auc.high) == (None, None, None)
        assert m.brier.value is not None


class TestPublicApi:
    def test_all_is_complete_and_importable(self) -> None:
        """Every name in __all__ exists, and every public submodule export is listed."""
        for name in cal.__all__:
            assert hasattr(cal, name), name
        exported = {n for n in vars(cal) if not n.startswith("_") and n[0].isupper()}
        modules = {"calibrators", "collapse", "metrics", "profile", "report"}
        assert exported - set(cal.__all__) - modules == set()
