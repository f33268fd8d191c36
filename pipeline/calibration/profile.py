"""Calibration profiles: one per served model version, stored as plain JSON files.

A profile says, for one exact served model id and system fingerprint, how to turn its raw
p_true into a calibrated probability, whether its signal is informative at all, and above
which calibrated probability a finding may be actioned without a person (None: never).

`profile_id` is a hash of the profile's content (everything but `created_at`), checked on
load: a Decision records the profile_id it used, so a hand-edited file that kept its old id
would make that record lie. Re-run `quoteguard calibrate` instead of editing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationError, model_validator

from pipeline.calibration.calibrators import (
    MIN_ISOTONIC,
    CalibratorParams,
    CandidateScore,
    fit_best,
    from_params,
)
from pipeline.calibration.calibrators import (
    Calibrator as _Calibrator,
)
from pipeline.calibration.collapse import CollapseCheck, signal_informative
from pipeline.calibration.metrics import (
    MIN_SUPPORT,
    SignalMetrics,
    actioned_set,
    as_arrays,
    summarize,
    threshold_for_precision,
)
from pipeline.defaults import (
    DEFAULT_BINS,
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_TARGET_PRECISION,
    PrecisionBound,
)
from pipeline.errors import ConfigError
from pipeline.models import Frozen


class ProfileBody(Frozen):
    """The content of a profile: everything its id is a hash of."""

    model: str = Field(description="Model name as requested from the provider.")
    served_model: str = Field(min_length=1, description="Model id the provider reported.")
    system_fingerprint: str | None
    calibrator: CalibratorParams
    auto_action_threshold: float | None = Field(
        ge=0,
        le=1,
        description="Calibrated p at or above which a valid finding may be auto-actioned; "
        "None: never.",
    )
    target_precision: float = Field(gt=0, le=1)
    min_support: int = Field(ge=1)
    # Defaults are what profiles written before these fields meant (their ids stay valid).
    precision_bound: PrecisionBound = Field(
        default="point",
        description="What had to reach target_precision: the measured precision ('point') "
        "or the lower end of its Wilson interval at `confidence` ('wilson').",
    )
    confidence: float = Field(default=DEFAULT_CONFIDENCE, gt=0, lt=1)
    threshold_support: int | None = Field(
        default=None, description="Held-out units at or above the threshold."
    )
    threshold_precision: float | None = Field(default=None, description="Their measured precision.")
    threshold_precision_low: float | None = Field(
        default=None, description="Its Wilson lower bound at `confidence`."
    )
    informative: bool
    collapse: CollapseCheck
    metrics_raw: SignalMetrics
    metrics_calibrated: SignalMetrics = Field(
        description="Of out-of-fold calibrated probabilities: no item scored by a calibrator "
        "that was fitted on it."
    )
    candidates: list[CandidateScore] = Field(description="Held-out NLL of every candidate.")
    golden_hash: str
    n_items: int = Field(ge=1)


_BODY_FIELDS = frozenset(ProfileBody.model_fields)


def _content_id(profile: ProfileBody) -> str:
    """Hash of the body as canonical JSON (sorted keys, Python float repr).

    Canonical JSON rather than pydantic's own output, so a change in its formatting cannot
    invalidate stored profiles; defaults are left out, so adding a field with a default
    later keeps the ids of profiles written before it existed.
    """
    doc = profile.model_dump(mode="json", include=set(_BODY_FIELDS), exclude_defaults=True)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class CalibrationProfile(ProfileBody):
    """A sealed profile: its content, when it was made, and the hash that names it."""

    created_at: datetime
    profile_id: str

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = _content_id(self)
        if self.profile_id != expected:
            raise ValueError(
                f"profile_id {self.profile_id!r} does not match its content ({expected!r}): "
                "the file was edited or corrupted; re-run calibration instead"
            )
        if self.informative != self.collapse.informative:
            raise ValueError("informative disagrees with the collapse check it came from")
        if not self.informative and self.auto_action_threshold is not None:
            raise ValueError("a non-informative signal cannot have an auto-action threshold")
        return self

    @cached_property
    def _calibrator(self) -> _Calibrator:
        # Built once per profile; a cached_property is not a field, so it is neither
        # serialised nor compared by ==.
        return from_params(self.calibrator)

    @classmethod
    def seal(cls, body: ProfileBody, created_at: datetime | None = None) -> CalibrationProfile:
        """Stamp a body with its content hash and creation time."""
        return cls(
            **dict(body),
            created_at=created_at or datetime.now(UTC),
            profile_id=_content_id(body),
        )

    def calibrate(self, p_true: float) -> float:
        """Calibrated probability for one raw verdict probability."""
        return float(self._calibrator.predict(np.array([p_true], dtype=np.float64))[0])

    def matches(self, served_model: str | None, fingerprint: str | None) -> bool:
        """Exact served model id and fingerprint; a None fingerprint only matches None."""
        return served_model == self.served_model and fingerprint == self.system_fingerprint


def build_profile(
    p: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    model: str,
    served_model: str,
    system_fingerprint: str | None,
    golden_hash: str,
    target_precision: float = DEFAULT_TARGET_PRECISION,
    min_support: int = MIN_SUPPORT,
    precision_bound: PrecisionBound = "wilson",
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
    n_bins: int = DEFAULT_BINS,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    min_isotonic: int = MIN_ISOTONIC,
    created_at: datetime | None = None,
) -> CalibrationProfile:
    """Everything `quoteguard calibrate` does, given raw p_true and labels of a golden set."""
    pa, ya = as_arrays(p, y)
    check = signal_informative(pa, ya)
    selection = fit_best(pa, ya, seed=seed, min_isotonic=min_isotonic)
    heldout = selection.heldout_p
    threshold = (
        threshold_for_precision(
            heldout, ya, target_precision, min_support, bound=precision_bound, confidence=confidence
        )
        if check.informative
        else None  # a flat signal never earns automatic actions, whatever its precision
    )
    actioned = None if threshold is None else actioned_set(heldout, ya, threshold, confidence)
    body = ProfileBody(
        model=model,
        served_model=served_model,
        system_fingerprint=system_fingerprint,
        calibrator=selection.calibrator.to_params(),
        auto_action_threshold=threshold,
        target_precision=target_precision,
        min_support=min_support,
        precision_bound=precision_bound,
        confidence=confidence,
        threshold_support=None if actioned is None else actioned.support,
        threshold_precision=None if actioned is None else actioned.precision,
        threshold_precision_low=None if actioned is None else actioned.precision_low,
        informative=check.informative,
        collapse=check,
        metrics_raw=summarize(pa, ya, n_bins, seed, n_bootstrap=n_bootstrap),
        metrics_calibrated=summarize(heldout, ya, n_bins, seed, n_bootstrap=n_bootstrap),
        candidates=selection.table,
        golden_hash=golden_hash,
        n_items=int(pa.size),
    )
    return CalibrationProfile.seal(body, created_at)


# ----------------------------------------------------------------------------- store


def _problem(exc: ValidationError) -> str:
    # Inputs are left out: an isotonic table or a hostile string would swamp the message.
    parts = [
        f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}"
        for e in exc.errors(include_url=False, include_input=False)
    ]
    return "; ".join(parts)


def profile_filename(served_model: str, fingerprint: str | None) -> str:
    """A safe, stable file name per (served model, fingerprint): re-calibrating replaces it.

    The readable part is sanitised (model ids contain '/'); the hash keeps two ids that
    sanitise alike ('a/b', 'a_b') from overwriting each other.
    """
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", served_model).lstrip(".")[:80] or "model"
    key = json.dumps([served_model, fingerprint])
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}.json"


class ProfileStore:
    """The profiles of a directory, looked up by exact served model and fingerprint."""

    def __init__(self, profiles: dict[Path, CalibrationProfile] | None = None) -> None:
        self._by_path = dict(profiles or {})
        self._by_key: dict[tuple[str, str | None], Path] = {}
        for path, prof in self._by_path.items():
            key = (prof.served_model, prof.system_fingerprint)
            if key in self._by_key:
                raise ConfigError(
                    f"{path}: same served model and fingerprint as {self._by_key[key]}; "
                    "keep one profile per model version"
                )
            self._by_key[key] = path

    @classmethod
    def load(cls, directory: Path | str) -> ProfileStore:
        """Load every *.json in `directory`; any bad file is an error naming that file."""
        root = Path(directory)
        if not root.is_dir():
            raise ConfigError(f"{root}: calibration profile directory does not exist")
        profiles: dict[Path, CalibrationProfile] = {}
        for path in sorted(root.glob("*.json")):
            try:
                profiles[path] = CalibrationProfile.model_validate_json(path.read_bytes())
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read calibration profile: {exc}") from exc
            except ValidationError as exc:
                raise ConfigError(f"{path}: invalid calibration profile: {_problem(exc)}") from exc
        return cls(profiles)

    @property
    def profiles(self) -> list[CalibrationProfile]:
        return list(self._by_path.values())

    def __len__(self) -> int:
        return len(self._by_path)

    def find(self, served_model: str | None, fingerprint: str | None) -> CalibrationProfile | None:
        if served_model is None:
            return None
        path = self._by_key.get((served_model, fingerprint))
        return None if path is None else self._by_path[path]

    @staticmethod
    def save(profile: CalibrationProfile, directory: Path | str) -> Path:
        """Write atomically (temp file + rename) so a reader never sees half a profile."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        path = root / profile_filename(profile.served_model, profile.system_fingerprint)
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".profile-", suffix=".part")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(profile.model_dump_json(indent=2))
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path
