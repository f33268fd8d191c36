"""Is the verdict probability still a signal? Offline (labelled) and live (unlabelled).

A model upgrade once made every token logprob 0: p_true = 1.0 for every finding, true or
spurious. Two checks catch that:

- `signal_informative(p, y)` on a labelled set, when a profile is built: the probabilities
  must spread out, and must rank real findings above spurious ones (AUC).
- `RollingCollapseDetector` on live traffic, where there are no labels: over the last
  `window` findings per model version, too many at the top or too little spread means the
  signal has gone flat. It reports each change of state once.

The decision itself is the pure function `assess_window`; the detector only keeps windows
in memory. A shared (Redis) detector would keep the windows there and call the same function.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from pipeline.calibration.metrics import TOP_P, FloatArray, as_arrays, as_probs, logit, roc_auc
from pipeline.models import Frozen

#: Clip used when measuring spread. Logprobs above -1e-4 count as "at zero" (the same cut
#: as `CompletionStats.share_at_zero`); clipping there stops float noise among a collapsed
#: model's near-zero logprobs (-1e-8 vs 0.0) from looking like spread.
SPREAD_EPS = 1e-4
#: Std of clipped logit(p) below which p cannot rank findings: 0.5 means the odds of most
#: findings differ by less than a factor of e^0.5 ~ 1.6.
MIN_LOGIT_SPREAD = 0.5
#: Below 0.6 the signal ranks real above spurious findings barely better than a coin.
MIN_AUC = 0.6
#: Fewer labelled items than this and an AUC says little (its interval spans ~0.2).
MIN_LABELLED = 30
#: Live defaults: the window is a few hours of traffic for a busy model; min_items stops a
#: first handful of confident findings from tripping the alarm.
DEFAULT_WINDOW = 500
DEFAULT_MIN_ITEMS = 50
#: Even a sharp model leaves a few percent of findings below 0.999; more than 98% at the top
#: is what the all-logprobs-zero upgrade looked like.
DEFAULT_MAX_SHARE_AT_TOP = 0.98


def logit_spread(p: FloatArray) -> float:
    """Standard deviation of logit(p) clipped at SPREAD_EPS (0 when every p is the same)."""
    return float(np.std(logit(p, SPREAD_EPS))) if p.size else 0.0


def iqr(p: FloatArray) -> float:
    q75, q25 = np.percentile(p, [75.0, 25.0])
    return float(q75 - q25)


class CollapseCheck(Frozen):
    """Whether a labelled set's verdict probabilities carry information, and why not."""

    informative: bool
    reasons: list[str] = Field(description="Every criterion that failed; empty if informative.")
    n: int
    spread: float = Field(description="Std of logit(p) clipped at SPREAD_EPS.")
    iqr: float
    share_at_top: float = Field(description="Share of p >= 0.999.")
    auc: float | None
    min_spread: float = MIN_LOGIT_SPREAD
    min_auc: float = MIN_AUC


def signal_informative(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    min_spread: float = MIN_LOGIT_SPREAD,
    min_auc: float = MIN_AUC,
    min_items: int = MIN_LABELLED,
) -> CollapseCheck:
    """Informative only if there are enough items, p spreads out, and p ranks well (AUC)."""
    pa, ya = as_arrays(p, y)
    spread = logit_spread(pa)
    auc = roc_auc(pa, ya)
    reasons: list[str] = []
    if pa.size < min_items:
        reasons.append(f"only {pa.size} labelled items (< {min_items})")
    if spread < min_spread:
        reasons.append(f"spread {spread:.3f} < {min_spread} (probabilities are flat)")
    if auc is None:
        reasons.append("AUC undefined: the labelled set has only one class")
    elif auc < min_auc:
        reasons.append(f"AUC {auc:.3f} < {min_auc} (does not rank real above spurious)")
    return CollapseCheck(
        informative=not reasons,
        reasons=reasons,
        n=int(pa.size),
        spread=spread,
        iqr=iqr(pa),
        share_at_top=float(np.mean(pa >= TOP_P)),
        auc=auc,
        min_spread=min_spread,
        min_auc=min_auc,
    )


# ----------------------------------------------------------------------------- live


class CollapseRule(Frozen):
    """Thresholds of the live check (no labels, so it looks at the distribution only)."""

    window: int = Field(default=DEFAULT_WINDOW, ge=1)
    min_items: int = Field(default=DEFAULT_MIN_ITEMS, ge=1)
    max_share_at_top: float = Field(default=DEFAULT_MAX_SHARE_AT_TOP, gt=0, le=1)
    min_spread: float = Field(default=MIN_LOGIT_SPREAD, ge=0)

    @model_validator(mode="after")
    def _reachable(self) -> Self:
        if self.min_items > self.window:
            raise ValueError(f"min_items {self.min_items} > window {self.window}: never ready")
        return self


class WindowAssessment(Frozen):
    ready: bool = Field(description="False until the window holds min_items probabilities.")
    collapsed: bool
    reason: str
    n: int
    share_at_top: float | None
    spread: float | None


def assess_window(values: Sequence[float] | FloatArray, rule: CollapseRule) -> WindowAssessment:
    """Pure: does this window of live verdict probabilities look collapsed under `rule`?"""
    p = np.asarray(values, dtype=np.float64)
    n = int(p.size)
    if n < rule.min_items:
        reason = f"warming up: {n} of {rule.min_items} items"
        return WindowAssessment(
            ready=False, collapsed=False, reason=reason, n=n, share_at_top=None, spread=None
        )
    share = float(np.mean(p >= TOP_P))
    spread = logit_spread(p)
    problems = []
    if share > rule.max_share_at_top:
        problems.append(f"share at p>=0.999 {share:.3f} > {rule.max_share_at_top}")
    if spread < rule.min_spread:
        problems.append(f"spread {spread:.3f} < {rule.min_spread}")
    reason = (
        "; ".join(problems)
        if problems
        else f"share at top {share:.3f}, spread {spread:.3f}: within limits"
    )
    return WindowAssessment(
        ready=True, collapsed=bool(problems), reason=reason, n=n, share_at_top=share, spread=spread
    )


class CollapseState(Frozen):
    """The state of one model version after an observation; `changed` marks a transition."""

    model_key: str
    collapsed: bool
    changed: bool
    ready: bool
    reason: str
    n: int
    share_at_top: float | None = None
    spread: float | None = None

    @classmethod
    def of(
        cls, model_key: str, a: WindowAssessment, *, collapsed: bool, changed: bool
    ) -> CollapseState:
        """The state after assessment `a`; `collapsed` may differ from `a.collapsed` (a
        window still warming up keeps the state it had)."""
        return cls(
            model_key=model_key,
            collapsed=collapsed,
            changed=changed,
            ready=a.ready,
            reason=a.reason,
            n=a.n,
            share_at_top=a.share_at_top,
            spread=a.spread,
        )


class CollapseDetector(Protocol):
    """Live windows per model version: in memory (below) or shared by a fleet (workers)."""

    def observe(self, model_key: str, p: float) -> CollapseState: ...

    def reset(self, model_key: str) -> None: ...


class RollingCollapseDetector:
    """Per-model-version rolling windows of live verdict probabilities, in memory.

    Thread-safe: one lock guards every window and state, so each transition is reported by
    exactly one `observe` call (its state has `changed=True`, and `on_change` is called with
    it). A version starts as not collapsed; nothing changes until its window holds
    `min_items` probabilities.
    """

    def __init__(
        self,
        window: int = DEFAULT_WINDOW,
        min_items: int = DEFAULT_MIN_ITEMS,
        max_share_at_top: float = DEFAULT_MAX_SHARE_AT_TOP,
        min_spread: float = MIN_LOGIT_SPREAD,
        on_change: Callable[[CollapseState], None] | None = None,
    ) -> None:
        self.rule = CollapseRule(
            window=window,
            min_items=min_items,
            max_share_at_top=max_share_at_top,
            min_spread=min_spread,
        )
        self.on_change = on_change
        self._windows: dict[str, deque[float]] = {}
        self._collapsed: dict[str, bool] = {}
        self._lock = threading.Lock()

    def observe(self, model_key: str, p: float) -> CollapseState:
        """Add one live verdict probability for `model_key` and return its state."""
        if not np.isfinite(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a finite probability in [0, 1], got {p!r}")
        with self._lock:
            window = self._windows.setdefault(model_key, deque(maxlen=self.rule.window))
            window.append(float(p))
            state = self._update(model_key, window)
        # Outside the lock: a slow callback (a log sink, an alert) must not stall observers,
        # and one that calls back into the detector must not deadlock.
        if state.changed and self.on_change is not None:
            self.on_change(state)
        return state

    def observe_many(self, model_key: str, ps: npt.ArrayLike) -> list[CollapseState]:
        """Observe a batch in order; returns only the states that changed."""
        return [s for v in as_probs(ps) if (s := self.observe(model_key, float(v))).changed]

    def state(self, model_key: str) -> CollapseState | None:
        with self._lock:
            window = self._windows.get(model_key)
            if window is None:
                return None
            a = assess_window(window, self.rule)
            return self._state(model_key, a, self._collapsed.get(model_key, False), changed=False)

    def reset(self, model_key: str) -> None:
        """Forget a version's window and state (e.g. after it has been re-profiled)."""
        with self._lock:
            self._windows.pop(model_key, None)
            self._collapsed.pop(model_key, None)

    def _update(self, model_key: str, window: deque[float]) -> CollapseState:
        a = assess_window(window, self.rule)
        before = self._collapsed.get(model_key, False)
        now = a.collapsed if a.ready else before
        self._collapsed[model_key] = now
        return self._state(model_key, a, now, changed=now != before)

    @staticmethod
    def _state(
        model_key: str, a: WindowAssessment, collapsed: bool, changed: bool
    ) -> CollapseState:
        return CollapseState.of(model_key, a, collapsed=collapsed, changed=changed)
