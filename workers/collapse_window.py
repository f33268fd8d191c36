"""The live collapse window of each model version, shared by every worker through Redis.

In memory (`RollingCollapseDetector`) each worker process would judge its own slice of the
traffic: with twenty workers, a collapse needs twenty times as many verdicts to show, and
the processes disagree about it for a while. Here the window is one Redis list per served
model version, and the collapsed/not-collapsed state one field of a hash, so the whole
fleet decides together and a transition is reported once (the `signal_collapsed` log event
comes from the one worker whose observation flipped the state; the metric is read from
Redis at scrape time).

The judgement itself is `pipeline.calibration.collapse.assess_window`, the same rule the
in-memory detector applies. Redis unreachable: the observation is skipped and the last
state this process saw stands; a moderation never fails because the window did.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import redis
import structlog

from pipeline.calibration.collapse import CollapseRule, CollapseState, assess_window

log = structlog.get_logger("quoteguard.workers")

#: A version not observed for this long is retired: its window expires and the metric
#: stops reporting it (a version that collapsed and was then replaced must not alert on).
RETIRE_AFTER_S = 7 * 24 * 3600

#: Push, trim to the window, note when the version was last seen, and return the window
#: with the stored state, in one trip.
_OBSERVE = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
return {redis.call('LRANGE', KEYS[1], 0, -1), redis.call('HGET', KEYS[2], ARGV[3])}
"""

#: Set the state (a version first judged healthy gets "0", for the metric); 1 only for the
#: one caller that changed it (absent counts as "0": a version starts as not collapsed).
_FLIP = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if (old or '0') == ARGV[2] then return 0 end
return 1
"""


def state_key(namespace: str) -> str:
    """Hash of model version -> "1" (collapsed) or "0"."""
    return f"{namespace}:collapse:state"


def seen_key(namespace: str) -> str:
    """Hash of model version -> unix time of its last live verdict."""
    return f"{namespace}:collapse:seen"


class RedisCollapseDetector:
    """Rolling windows of live verdict probabilities per model version, in Redis."""

    def __init__(
        self,
        client: redis.Redis[str],
        namespace: str,
        rule: CollapseRule | None = None,
        on_change: Callable[[CollapseState], None] | None = None,
    ) -> None:
        self.redis = client
        self.namespace = namespace
        self.rule = rule or CollapseRule()
        self.on_change = on_change
        self.states = state_key(namespace)
        self.seen = seen_key(namespace)
        self._observe = client.register_script(_OBSERVE)
        self._flip = client.register_script(_FLIP)
        self._last_seen: dict[str, bool] = {}

    def window_key(self, model_key: str) -> str:
        return f"{self.namespace}:collapse:window:{model_key}"

    def observe(self, model_key: str, p: float) -> CollapseState:
        """Add one live verdict probability for `model_key` and return the fleet's state."""
        if not np.isfinite(p) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a finite probability in [0, 1], got {p!r}")
        try:
            values, stored = self._observe(
                keys=[self.window_key(model_key), self.states, self.seen],
                args=[
                    repr(float(p)),
                    self.rule.window,
                    model_key,
                    RETIRE_AFTER_S,
                    int(time.time()),
                ],
            )
            a = assess_window([float(v) for v in values], self.rule)
            changed = False
            collapsed = stored == "1"
            if a.ready and (stored is None or a.collapsed != collapsed):
                changed = bool(
                    self._flip(keys=[self.states], args=[model_key, "1" if a.collapsed else "0"])
                )
                collapsed = a.collapsed
        except redis.RedisError as exc:
            log.warning("collapse_window_unavailable", model_version=model_key, error=str(exc))
            collapsed = self._last_seen.get(model_key, False)
            return CollapseState(
                model_key=model_key,
                collapsed=collapsed,
                changed=False,
                ready=False,
                reason="shared window unavailable",
                n=0,
            )
        self._last_seen[model_key] = collapsed
        state = CollapseState.of(model_key, a, collapsed=collapsed, changed=changed)
        if changed and self.on_change is not None:
            self.on_change(state)
        return state

    def reset(self, model_key: str) -> None:
        """Forget a version's window and state (e.g. after it has been re-profiled)."""
        with self.redis.pipeline() as pipe:
            pipe.delete(self.window_key(model_key))
            pipe.hdel(self.states, model_key)
            pipe.hdel(self.seen, model_key)
            pipe.execute()
        self._last_seen.pop(model_key, None)


def collapsed_versions(client: redis.Redis[str], namespace: str) -> dict[str, bool]:
    """Every model version the fleet has judged, and whether its signal is collapsed."""
    return {key: value == "1" for key, value in client.hgetall(state_key(namespace)).items()}


def current_states(
    client: redis.Redis[str], namespace: str, retire_after_s: float = RETIRE_AFTER_S
) -> dict[str, bool]:
    """Like `collapsed_versions`, only for versions with a live verdict in `retire_after_s`."""
    seen = client.hgetall(seen_key(namespace))
    cutoff = time.time() - retire_after_s
    return {
        version: collapsed
        for version, collapsed in collapsed_versions(client, namespace).items()
        if float(seen.get(version, 0)) >= cutoff
    }
