"""Calibrators, their JSON params, held-out selection, and the profiles that carry them.

Profiles live here too: a profile is a calibrator's params plus the evidence for them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError
from sklearn.isotonic import IsotonicRegression

from pipeline.calibration import metrics
from pipeline.calibration.calibrators import (
    Calibrator,
    CalibratorParams,
    Identity,
    IsotonicCalibrator,
    IsotonicParams,
    PlattScaling,
    TemperatureScaling,
    fit_best,
    from_params,
)
from pipeline.calibration.metrics import FloatArray, nll
from pipeline.calibration.profile import (
    CalibrationProfile,
    ProfileBody,
    ProfileStore,
    build_profile,
    profile_filename,
)
from pipeline.errors import ConfigError

PARAMS = TypeAdapter(CalibratorParams)


def sigmoid(z: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def overconfident(
    n: int, seed: int, slope: float = 2.0, shift: float = 0.0, spread: float = 1.5
) -> tuple[FloatArray, FloatArray]:
    """True probability sigmoid(z), z ~ N(0, spread); the model reports sigmoid(slope*z + shift)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, spread, n)
    y = (rng.random(n) < sigmoid(z)).astype(np.float64)
    return sigmoid(slope * z + shift), y


def json_round_trip(c: Calibrator) -> Calibrator:
    """Through plain JSON text and back, as a profile file does it."""
    text = json.dumps(c.to_params().model_dump(mode="json"))
    return from_params(PARAMS.validate_json(text))


class TestTemperatureScaling:
    def test_recovers_the_temperature(self) -> None:
        """A model twice as sharp as the truth is fitted with T close to 2."""
        p, y = overconfident(20000, seed=0, slope=2.0)
        assert TemperatureScaling().fit(p, y).temperature == pytest.approx(2.0, rel=0.08)

    def test_keeps_the_ranking(self) -> None:
        """Temperature scaling is monotone: the order of items is unchanged."""
        p, y = overconfident(300, seed=1)
        out = TemperatureScaling().fit(p, y).predict(p)
        np.testing.assert_array_equal(np.argsort(p, kind="stable"), np.argsort(out, kind="stable"))

    def test_collapsed_input_stays_finite(self) -> None:
        """Every p = 1.0 (logit clipped, not infinite) fits and predicts a probability."""
        y = np.array([1.0, 0.0] * 100)
        out = TemperatureScaling().fit(np.ones(200), y).predict([1.0, 0.0, 0.5])
        assert np.all(np.isfinite(out))
        assert np.all((out >= 0) & (out <= 1))

    def test_params_round_trip(self) -> None:
        """to_params -> JSON -> from_params predicts identically."""
        p, y = overconfident(500, seed=2)
        c = TemperatureScaling().fit(p, y)
        np.testing.assert_array_equal(json_round_trip(c).predict(p), c.predict(p))


class TestPlattScaling:
    def test_recovers_slope_and_intercept(self) -> None:
        """Reported logit 2z + 1 against truth z: slope 1/2, intercept -1/2."""
        p, y = overconfident(20000, seed=3, slope=2.0, shift=1.0)
        c = PlattScaling().fit(p, y)
        assert c.slope == pytest.approx(0.5, abs=0.05)
        assert c.intercept == pytest.approx(-0.5, abs=0.08)

    def test_separable_data_gives_a_finite_slope(self) -> None:
        """Platt's smoothed targets keep a perfectly separable set from diverging."""
        p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
        y = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
        c = PlattScaling().fit(p, y)
        assert np.isfinite(c.slope)
        assert c.slope < 50
        assert c.predict([0.9])[0] < 1.0

    def test_params_round_trip(self) -> None:
        """to_params -> JSON -> from_params predicts identically."""
        p, y = overconfident(500, seed=4, shift=0.5)
        c = PlattScaling().fit(p, y)
        np.testing.assert_array_equal(json_round_trip(c).predict(p), c.predict(p))


class TestIsotonicCalibrator:
    def test_predicts_like_sklearn_including_out_of_range(self) -> None:
        """Interpolating the stored knots equals IsotonicRegression(out_of_bounds='clip')."""
        p, y = overconfident(400, seed=5)
        fit_on = np.clip(p, 0.05, 0.95)
        ours = IsotonicCalibrator().fit(fit_on, y)
        ref = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(fit_on, y)
        grid = np.linspace(0.0, 1.0, 101)
        np.testing.assert_allclose(ours.predict(grid), ref.predict(grid))

    def test_params_round_trip(self) -> None:
        """The knots in JSON restore the calibrator exactly, with no pickle."""
        p, y = overconfident(400, seed=6)
        c = IsotonicCalibrator().fit(p, y)
        grid = np.linspace(0.0, 1.0, 57)
        np.testing.assert_array_equal(json_round_trip(c).predict(grid), c.predict(grid))

    def test_unfitted_refuses(self) -> None:
        """Using it before fit is an error, not a silent identity."""
        with pytest.raises(RuntimeError, match="before fit"):
            IsotonicCalibrator().predict([0.5])

    @pytest.mark.parametrize(
        ("x", "y"),
        [([0.1, 0.2], [0.5]), ([0.2, 0.1], [0.1, 0.2]), ([0.1, 0.2], [0.6, 0.5]), ([0.1], [1.5])],
    )
    def test_params_are_validated(self, x: list[float], y: list[float]) -> None:
        """Mismatched, non-monotone or out-of-range knots are refused on load."""
        with pytest.raises(ValidationError):
            IsotonicParams(x=x, y=y)


class TestFromParams:
    @pytest.mark.parametrize(
        "text",
        [
            '{"kind": "identity"}',
            '{"kind": "temperature", "temperature": 1.7}',
            '{"kind": "platt", "slope": 0.6, "intercept": -0.2}',
            '{"kind": "isotonic", "x": [0.1, 0.9], "y": [0.2, 0.8]}',
        ],
    )
    def test_every_kind_restores_from_plain_json(self, text: str) -> None:
        """Each kind of params JSON builds a calibrator that dumps the same params."""
        params = PARAMS.validate_json(text)
        c = from_params(params)
        assert c.to_params() == params
        assert 0.0 <= c.predict([0.5])[0] <= 1.0

    @pytest.mark.parametrize(
        "text",
        [
            '{"kind": "pickle", "data": "..."}',
            '{"kind": "temperature", "temperature": -1}',
            '{"kind": "temperature", "temperature": "Infinity"}',
            '{"kind": "platt", "slope": 1}',
        ],
    )
    def test_bad_params_are_refused(self, text: str) -> None:
        """Unknown kinds, non-positive or infinite temperatures and missing fields fail."""
        with pytest.raises(ValidationError):
            PARAMS.validate_json(text)


class TestFitBest:
    def test_chooses_the_lowest_heldout_nll(self) -> None:
        """The chosen kind has the minimum held-out NLL in the table and beats identity."""
        p, y = overconfident(1000, seed=7)
        sel = fit_best(p, y, seed=0)
        scores = {row.kind: row.heldout_nll for row in sel.table if row.heldout_nll is not None}
        assert sel.calibrator.kind == min(scores, key=lambda k: scores[k])
        assert scores[sel.calibrator.kind] < scores["identity"]
        assert nll(sel.heldout_p, y) == pytest.approx(scores[sel.calibrator.kind])

    def test_isotonic_needs_enough_items(self) -> None:
        """Below min_isotonic, isotonic is listed as skipped with the reason."""
        p, y = overconfident(150, seed=8)
        sel = fit_best(p, y, min_isotonic=200)
        iso = next(row for row in sel.table if row.kind == "isotonic")
        assert iso.heldout_nll is None
        assert iso.note is not None
        assert "150" in iso.note
        assert sel.calibrator.kind != "isotonic"

    def test_isotonic_is_a_candidate_with_enough_items(self) -> None:
        """At or above min_isotonic every candidate gets a held-out NLL."""
        p, y = overconfident(300, seed=9)
        sel = fit_best(p, y, min_isotonic=200)
        assert all(row.heldout_nll is not None for row in sel.table)

    def test_is_deterministic_for_a_seed(self) -> None:
        """Same data and seed: same choice and same table."""
        p, y = overconfident(400, seed=10)
        a, b = fit_best(p, y, seed=5), fit_best(p, y, seed=5)
        assert a.table == b.table
        assert a.calibrator.to_params() == b.calibrator.to_params()

    def test_rare_class_reduces_the_folds(self) -> None:
        """With 3 positives there are at most 3 folds, and no fold warning."""
        p, y = overconfident(100, seed=11)
        y[:] = 0.0
        y[:3] = 1.0
        assert fit_best(p, y).n_folds == 3

    def test_one_class_is_refused(self) -> None:
        """A calibrator cannot be chosen without both classes."""
        with pytest.raises(ValueError, match="2 items of each class"):
            fit_best([0.4, 0.6, 0.9], [1.0, 1.0, 1.0])

    def test_collapsed_signal_predicts_the_base_rate(self) -> None:
        """All p = 1.0: the best any calibrator can do is the share of true findings."""
        y = np.array([1.0] * 70 + [0.0] * 30)
        sel = fit_best(np.ones(100), y)
        assert sel.calibrator.predict([1.0])[0] == pytest.approx(0.7, abs=0.02)


# ----------------------------------------------------------------------------- profiles

CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_profile(
    p: FloatArray,
    y: FloatArray,
    served_model: str = "acme/guard-1",
    fingerprint: str | None = "fp_1",
) -> CalibrationProfile:
    return build_profile(
        p,
        y,
        model="guard",
        served_model=served_model,
        system_fingerprint=fingerprint,
        golden_hash="sha256:golden",
        n_bootstrap=100,
        created_at=CREATED,
    )


@pytest.fixture(scope="module")
def informative() -> CalibrationProfile:
    p, y = overconfident(600, seed=12, spread=3.0)
    return make_profile(p, y)


@pytest.fixture(scope="module")
def collapsed() -> CalibrationProfile:
    y = np.array([1.0, 0.0] * 150)
    return make_profile(np.ones(300), y, served_model="acme/guard-2", fingerprint=None)


class TestCalibrationProfile:
    def test_informative_signal_gets_a_threshold(self, informative: CalibrationProfile) -> None:
        """An informative signal earns an auto-action threshold from held-out predictions."""
        assert informative.informative
        assert informative.auto_action_threshold is not None
        assert informative.n_items == 600
        assert informative.metrics_calibrated.ece.value is not None
        assert informative.metrics_raw.ece.value is not None
        assert informative.metrics_calibrated.ece.value < informative.metrics_raw.ece.value

    def test_threshold_is_vouched_for_by_its_lower_bound(
        self, informative: CalibrationProfile
    ) -> None:
        """The profile says what its threshold actions on held-out units and the 95 % lower
        bound of that precision, which reaches the target."""
        assert informative.precision_bound == "wilson"
        assert informative.threshold_support is not None
        assert informative.threshold_support >= informative.min_support
        assert informative.threshold_precision_low is not None
        assert informative.threshold_precision is not None
        assert informative.threshold_precision_low >= informative.target_precision
        assert informative.threshold_precision >= informative.threshold_precision_low

    def test_profiles_from_before_the_bound_keep_their_id(self) -> None:
        """A profile file written by the code before precision_bound existed (commit
        8bb75da) loads unchanged: same id, and it says it used point precision."""
        path = Path(__file__).parent / "fixtures/profiles/written-before-precision-bound.json"
        old = CalibrationProfile.model_validate_json(path.read_text())
        assert old.profile_id == json.loads(path.read_text())["profile_id"] == "be0acf36842c22ef"
        assert old.precision_bound == "point"
        assert old.threshold_support is None
        assert old.auto_action_threshold is not None

    def test_collapsed_signal_never_auto_actions(self, collapsed: CalibrationProfile) -> None:
        """All p = 1.0: not informative, no threshold, and the check says why."""
        assert not collapsed.informative
        assert collapsed.auto_action_threshold is None
        assert any("spread" in r for r in collapsed.collapse.reasons)

    def test_calibrate_is_monotone_and_handles_the_edges(
        self, informative: CalibrationProfile
    ) -> None:
        """calibrate(p) is non-decreasing in p and defined at exactly 0 and 1."""
        out = [informative.calibrate(v) for v in (0.0, 0.3, 0.7, 0.99, 1.0)]
        assert out == sorted(out)
        assert all(0.0 <= v <= 1.0 for v in out)

    def test_calibrate_refuses_nan(self, informative: CalibrationProfile) -> None:
        """A NaN p_true is an error, not a silent NaN confidence."""
        with pytest.raises(ValueError, match="probabilities"):
            informative.calibrate(float("nan"))

    @pytest.mark.parametrize(
        ("served", "fp", "expected"),
        [
            ("acme/guard-1", "fp_1", True),
            ("acme/guard-1", "fp_2", False),
            ("acme/guard-1", None, False),
            ("acme/guard-1-mini", "fp_1", False),
            (None, "fp_1", False),
        ],
    )
    def test_matches_exact_version_only(
        self, informative: CalibrationProfile, served: str | None, fp: str | None, expected: bool
    ) -> None:
        """Served model id and fingerprint must both match exactly."""
        assert informative.matches(served, fp) is expected

    def test_none_fingerprint_matches_only_none(self, collapsed: CalibrationProfile) -> None:
        """A profile made without a fingerprint matches None and nothing else."""
        assert collapsed.matches("acme/guard-2", None)
        assert not collapsed.matches("acme/guard-2", "fp_1")

    def test_json_round_trip_keeps_id_and_predictions(
        self, informative: CalibrationProfile
    ) -> None:
        """A profile read back from its JSON is equal and calibrates identically."""
        back = CalibrationProfile.model_validate_json(informative.model_dump_json(indent=2))
        assert back == informative
        assert back.calibrate(0.8) == informative.calibrate(0.8)

    def test_id_is_a_content_hash(self, informative: CalibrationProfile) -> None:
        """Same content at another time: same id; different content: different id."""
        body = ProfileBody.model_validate(
            informative.model_dump(include=set(ProfileBody.model_fields))
        )
        later = CalibrationProfile.seal(body, datetime(2027, 1, 1, tzinfo=UTC))
        assert later.profile_id == informative.profile_id
        other = CalibrationProfile.seal(body.model_copy(update={"golden_hash": "sha256:other"}))
        assert other.profile_id != informative.profile_id

    def test_edited_profile_is_refused(self, informative: CalibrationProfile) -> None:
        """Changing the threshold by hand breaks the content hash."""
        doc = json.loads(informative.model_dump_json())
        doc["auto_action_threshold"] = 0.01
        with pytest.raises(ValidationError, match="profile_id"):
            CalibrationProfile.model_validate(doc)

    def test_flat_signal_with_threshold_is_refused(self, collapsed: CalibrationProfile) -> None:
        """Even with a valid hash, a non-informative profile cannot carry a threshold."""
        body = ProfileBody.model_validate(
            {
                **collapsed.model_dump(include=set(ProfileBody.model_fields)),
                "auto_action_threshold": 0.5,
            }
        )
        with pytest.raises(ValidationError, match="non-informative"):
            CalibrationProfile.seal(body)


class TestProfileStore:
    def test_save_load_find(
        self, tmp_path: Path, informative: CalibrationProfile, collapsed: CalibrationProfile
    ) -> None:
        """Saved profiles load back and are found by exact served model and fingerprint."""
        ProfileStore.save(informative, tmp_path)
        ProfileStore.save(collapsed, tmp_path)
        store = ProfileStore.load(tmp_path)
        assert len(store) == 2
        assert store.find("acme/guard-1", "fp_1") == informative
        assert store.find("acme/guard-2", None) == collapsed
        assert store.find("acme/guard-1", None) is None
        assert store.find(None, None) is None

    def test_save_replaces_the_same_version(
        self, tmp_path: Path, informative: CalibrationProfile
    ) -> None:
        """Re-calibrating a version overwrites its file, leaving no temp files behind."""
        first = ProfileStore.save(informative, tmp_path)
        second = ProfileStore.save(informative, tmp_path)
        assert first == second
        assert [f.name for f in tmp_path.iterdir()] == [first.name]

    def test_file_names_are_safe_and_distinct(self) -> None:
        """Model ids with '/' or '..' stay inside the directory and never collide."""
        a = profile_filename("../../etc/passwd", None)
        assert "/" not in a
        assert not a.startswith(".")
        assert profile_filename("a/b", None) != profile_filename("a_b", None)
        assert profile_filename("a/b", None) != profile_filename("a/b", "fp")

    def test_empty_directory_has_no_profiles(self, tmp_path: Path) -> None:
        """No profiles: nothing is found, so nothing is auto-actioned."""
        assert ProfileStore.load(tmp_path).find("acme/guard-1", "fp_1") is None

    def test_missing_directory_is_a_config_error(self, tmp_path: Path) -> None:
        """A directory that does not exist is named in the error."""
        with pytest.raises(ConfigError, match="does not exist"):
            ProfileStore.load(tmp_path / "nope")

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ("{not json", "invalid calibration profile"),
            ('{"model": "x"}', "served_model"),
            ("[]", "invalid calibration profile"),
        ],
    )
    def test_bad_file_is_named(self, tmp_path: Path, content: str, problem: str) -> None:
        """A broken profile raises ConfigError naming the file and the problem."""
        bad = tmp_path / "broken.json"
        bad.write_text(content)
        with pytest.raises(ConfigError, match=problem) as info:
            ProfileStore.load(tmp_path)
        assert str(bad) in str(info.value)

    def test_edited_file_is_named(self, tmp_path: Path, informative: CalibrationProfile) -> None:
        """A hand-edited profile fails to load with its path and the hash problem."""
        path = ProfileStore.save(informative, tmp_path)
        doc = json.loads(path.read_text())
        doc["target_precision"] = 0.5
        path.write_text(json.dumps(doc))
        with pytest.raises(ConfigError, match="profile_id") as info:
            ProfileStore.load(tmp_path)
        assert str(path) in str(info.value)

    def test_two_files_for_one_version_are_refused(
        self, tmp_path: Path, informative: CalibrationProfile
    ) -> None:
        """Two profiles for the same version would make the choice arbitrary: error."""
        path = ProfileStore.save(informative, tmp_path)
        (tmp_path / "copy.json").write_text(path.read_text())
        with pytest.raises(ConfigError, match="same served model"):
            ProfileStore.load(tmp_path)

    def test_loaded_profile_calibrates_like_the_saved_one(self, tmp_path: Path) -> None:
        """Whatever calibrator was chosen, the loaded profile gives the same confidences."""
        p, y = overconfident(200, seed=13, slope=1.0)
        prof = make_profile(p, y, served_model="acme/calibrated")
        ProfileStore.save(prof, tmp_path)
        back = ProfileStore.load(tmp_path).find("acme/calibrated", "fp_1")
        assert back is not None
        grid = np.linspace(0.0, 1.0, 11)
        assert [back.calibrate(v) for v in grid] == [prof.calibrate(v) for v in grid]
        assert back.min_support == metrics.MIN_SUPPORT


class TestIdentity:
    def test_identity_changes_nothing(self) -> None:
        """The baseline candidate returns p as given."""
        np.testing.assert_array_equal(
            Identity().fit([0.2, 0.9], [0.0, 1.0]).predict([0.42]), [0.42]
        )
