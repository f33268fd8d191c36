"""How far a served model version's logprobs may be trusted, item by item.

Binds the confidence stage to an exact model version: the calibration profile for that
served model id and fingerprint (none → logprobs never auto-action), and a rolling window of
its live verdict probabilities that raises an alarm when the signal collapses.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import structlog

from pipeline.calibration.collapse import CollapseDetector, RollingCollapseDetector
from pipeline.calibration.profile import CalibrationProfile, ProfileStore
from pipeline.config import Settings
from pipeline.models import VerdictSignal
from pipeline.routing import SignalStanding

log = structlog.get_logger("quoteguard")


def version_key(served_model: str | None, fingerprint: str | None) -> str:
    return f"{served_model or '?'}|{fingerprint or '-'}"


class SignalWatch:
    """Profiles by model version plus live collapse detection; shared by all items."""

    def __init__(self, profiles: ProfileStore, detector: CollapseDetector | None = None) -> None:
        self.profiles = profiles
        self.detector = detector or RollingCollapseDetector()
        self._collapsed: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, detector: CollapseDetector | None = None
    ) -> SignalWatch:
        directory = settings.profiles_dir
        if not directory.is_dir() and "profiles_dir" not in settings.model_fields_set:
            # No profiles yet is the normal first run: every violation goes to review.
            return cls(ProfileStore(), detector)
        return cls(ProfileStore.load(directory), detector)

    def profile_for(
        self, served_model: str | None, fingerprint: str | None
    ) -> CalibrationProfile | None:
        return self.profiles.find(served_model, fingerprint)

    def standing(
        self,
        served_model: str | None,
        fingerprint: str | None,
        verdicts: Sequence[VerdictSignal],
    ) -> SignalStanding:
        key = version_key(served_model, fingerprint)
        self._observe(key, verdicts)
        profile = self.profile_for(served_model, fingerprint)
        if profile is None:
            return SignalStanding(
                note=f"no calibration profile for {key}: logprobs are recorded, not trusted"
            )
        if not profile.informative:
            return SignalStanding(
                profile_id=profile.profile_id,
                collapsed=True,
                note=f"the profile for {key} found no information in its logprobs",
            )
        reason = self.collapse_reason(served_model, fingerprint)
        if reason is not None:
            return SignalStanding(
                profile_id=profile.profile_id,
                collapsed=True,
                note=f"live signal collapsed for {key}: {reason}",
            )
        return SignalStanding(
            profile_id=profile.profile_id,
            threshold=profile.auto_action_threshold,
            calibrator=profile.calibrate,
        )

    def collapse_reason(self, served_model: str | None, fingerprint: str | None) -> str | None:
        """Why the live window finds this version's signal collapsed; None while it is not."""
        with self._lock:
            return self._collapsed.get(version_key(served_model, fingerprint))

    def _observe(self, key: str, verdicts: Sequence[VerdictSignal]) -> None:
        with self._lock:
            self._observe_locked(key, verdicts)

    def _observe_locked(self, key: str, verdicts: Sequence[VerdictSignal]) -> None:
        for verdict in verdicts:
            if verdict.p_true is None:
                continue
            state = self.detector.observe(key, verdict.p_true)
            # The local view follows the detector's (a shared detector speaks for the fleet);
            # the transition is logged by the one observation that made it.
            if state.collapsed:
                self._collapsed.setdefault(key, state.reason or "collapsed")
            else:
                self._collapsed.pop(key, None)
            if state.changed and state.collapsed:
                log.error("signal_collapsed", model_version=key, reason=state.reason)
            elif state.changed:
                log.info("signal_recovered", model_version=key)

    @staticmethod
    def calibrate(standing: SignalStanding, p_true: float | None) -> float | None:
        if p_true is None or standing.calibrator is None:
            return None
        return standing.calibrator(p_true)
