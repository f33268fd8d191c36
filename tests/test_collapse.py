"""Collapse detection: labelled informativeness checks and the live rolling detector."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.calibration.collapse import (
    MIN_AUC,
    MIN_LOGIT_SPREAD,
    CollapseRule,
    CollapseState,
    RollingCollapseDetector,
    assess_window,
    signal_informative,
)
from pipeline.calibration.metrics import FloatArray


def informative_set(n: int, seed: int) -> tuple[FloatArray, FloatArray]:
    """Probabilities that spread out and rank real findings above spurious ones."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.7, 0.7, n)
    return p, (rng.random(n) < p).astype(np.float64)


def healthy_stream(n: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    return np.asarray(rng.beta(2.0, 0.6, n), dtype=np.float64)


class TestSignalInformative:
    def test_informative_signal_passes(self) -> None:
        """Spread and AUC above their floors: informative, no reasons."""
        check = signal_informative(*informative_set(400, seed=0))
        assert check.informative
        assert check.reasons == []
        assert check.spread > MIN_LOGIT_SPREAD
        assert check.auc is not None
        assert check.auc > MIN_AUC

    def test_all_logprobs_zero_is_not_informative(self) -> None:
        """The upgrade that made every logprob 0: flat, top-heavy, coin-flip AUC."""
        y = np.array([1.0, 0.0] * 200)
        check = signal_informative(np.ones(400), y)
        assert not check.informative
        assert check.share_at_top == 1.0
        assert check.spread == pytest.approx(0.0, abs=1e-9)
        assert check.auc == 0.5
        assert len(check.reasons) == 2

    def test_float_noise_near_zero_is_not_spread(self) -> None:
        """Logprobs of -1e-8 versus 0.0 are noise, not signal: clipped away."""
        rng = np.random.default_rng(1)
        p = np.exp(-rng.random(400) * 1e-7)
        y = (rng.random(400) < 0.5).astype(np.float64)
        check = signal_informative(p, y)
        assert not check.informative
        assert check.spread < 1e-6

    def test_spread_without_ranking_is_not_informative(self) -> None:
        """Probabilities that vary but are unrelated to the truth fail on AUC alone."""
        rng = np.random.default_rng(2)
        p = rng.random(1000)
        y = (rng.random(1000) < 0.5).astype(np.float64)
        check = signal_informative(p, y)
        assert not check.informative
        assert [r for r in check.reasons if "AUC" in r] == check.reasons

    def test_too_few_items(self) -> None:
        """A dozen labelled items cannot show a signal is informative."""
        check = signal_informative(*informative_set(12, seed=3))
        assert not check.informative
        assert any("labelled items" in r for r in check.reasons)

    def test_one_class(self) -> None:
        """Without both classes there is no AUC, so no proof of information."""
        p, _ = informative_set(100, seed=4)
        check = signal_informative(p, np.ones(100))
        assert not check.informative
        assert check.auc is None
        assert any("one class" in r for r in check.reasons)

    def test_round_trips_json(self) -> None:
        """The check is a frozen pydantic record (it goes into profiles)."""
        check = signal_informative(*informative_set(100, seed=5))
        assert type(check).model_validate_json(check.model_dump_json()) == check


class TestAssessWindow:
    RULE = CollapseRule(window=100, min_items=10)

    def test_warming_up(self) -> None:
        """Below min_items nothing is decided."""
        a = assess_window([1.0] * 5, self.RULE)
        assert not a.ready
        assert not a.collapsed
        assert "warming up" in a.reason

    def test_top_heavy_window_is_collapsed(self) -> None:
        """More than max_share_at_top at p >= 0.999 is collapse."""
        a = assess_window([1.0] * 99 + [0.3], self.RULE)
        assert a.collapsed
        assert "share" in a.reason

    def test_flat_window_below_the_top_is_collapsed(self) -> None:
        """Every p the same (even not at the top) has no spread: collapse."""
        a = assess_window([0.9] * 50, self.RULE)
        assert a.collapsed
        assert "spread" in a.reason
        assert a.share_at_top == 0.0

    def test_healthy_window(self) -> None:
        """Spread-out probabilities are within limits."""
        a = assess_window(healthy_stream(100, seed=6), self.RULE)
        assert a.ready
        assert not a.collapsed

    def test_unreachable_rule_is_refused(self) -> None:
        """min_items larger than the window could never be reached."""
        with pytest.raises(ValidationError, match="never ready"):
            CollapseRule(window=10, min_items=20)


class TestRollingCollapseDetector:
    def test_healthy_stream_never_changes(self) -> None:
        """A healthy model produces no state change at all."""
        det = RollingCollapseDetector(window=200, min_items=50)
        changes = det.observe_many("m@fp1", healthy_stream(1000, seed=7))
        assert changes == []
        state = det.state("m@fp1")
        assert state is not None
        assert not state.collapsed
        assert state.n == 200

    def test_collapse_then_recovery_each_reported_once(self) -> None:
        """Healthy -> all ones -> healthy: exactly two changes, True then False."""
        det = RollingCollapseDetector(window=100, min_items=50)
        det.observe_many("m", healthy_stream(300, seed=8))
        down = det.observe_many("m", np.ones(300))
        up = det.observe_many("m", healthy_stream(300, seed=9))
        assert [s.collapsed for s in down] == [True]
        assert [s.collapsed for s in up] == [False]
        assert "share" in down[0].reason
        assert "within limits" in up[0].reason

    def test_collapsed_from_the_start_is_reported_when_ready(self) -> None:
        """A version that is flat from its first item changes state at min_items."""
        det = RollingCollapseDetector(window=100, min_items=50)
        states = [det.observe("new", 1.0) for _ in range(60)]
        assert [i for i, s in enumerate(states) if s.changed] == [49]
        assert all(not s.ready for s in states[:49])
        assert states[-1].collapsed

    def test_on_change_hears_each_transition(self) -> None:
        """The callback gets exactly the states that changed, in order."""
        heard: list[CollapseState] = []
        det = RollingCollapseDetector(window=100, min_items=50, on_change=heard.append)
        det.observe_many("m", healthy_stream(200, seed=11))
        det.observe_many("m", np.ones(200))
        det.observe_many("m", healthy_stream(200, seed=12))
        assert [(s.model_key, s.collapsed) for s in heard] == [("m", True), ("m", False)]

    def test_versions_are_independent(self) -> None:
        """Each model key has its own window and state."""
        det = RollingCollapseDetector(window=100, min_items=20)
        det.observe_many("old", healthy_stream(100, seed=10))
        det.observe_many("new", np.ones(100))
        old, new = det.state("old"), det.state("new")
        assert old is not None
        assert new is not None
        assert (old.collapsed, new.collapsed) == (False, True)
        assert det.state("unknown") is None

    def test_reset_forgets_a_version(self) -> None:
        """After reset the version starts over, warming up."""
        det = RollingCollapseDetector(window=50, min_items=10)
        det.observe_many("m", np.ones(50))
        det.reset("m")
        assert det.state("m") is None
        assert not det.observe("m", 1.0).collapsed

    @pytest.mark.parametrize("bad", [float("nan"), -0.1, 1.5, float("inf")])
    def test_bad_probability_is_refused(self, bad: float) -> None:
        """NaN or out-of-range p would poison the window: refused."""
        with pytest.raises(ValueError, match="probability"):
            RollingCollapseDetector().observe("m", bad)

    def test_threads_see_each_transition_once(self) -> None:
        """Eight threads feeding one collapsed version: one change reported in total."""
        det = RollingCollapseDetector(window=500, min_items=50)
        changes: list[CollapseState] = []
        lock = threading.Lock()

        def feed() -> None:
            for _ in range(200):
                s = det.observe("shared", 1.0)
                if s.changed:
                    with lock:
                        changes.append(s)

        threads = [threading.Thread(target=feed) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(changes) == 1
        final = det.state("shared")
        assert final is not None
        assert final.collapsed
        assert final.n == 500
