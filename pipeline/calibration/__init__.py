"""Calibration of the verdict-probability signal, per served model version.

    metrics       ECE/MCE/SCE, Brier, NLL, ROC-AUC, bins, precision/coverage, bootstrap CIs
    calibrators   temperature, Platt, isotonic; JSON params; held-out selection
    collapse      is the signal informative (labelled); is it collapsing (live)
    profile       CalibrationProfile per (served model, fingerprint), ProfileStore
    report        plots, a self-contained HTML page, JSON

The library is pure: the CLI commands `eval`, `calibrate` and `compare` are each one call
here (`EvaluationResult.evaluate` + `write_report`, `build_profile` + `ProfileStore.save`).
"""

from pipeline.calibration.calibrators import (
    Calibrator,
    CalibratorParams,
    CandidateScore,
    Identity,
    IsotonicCalibrator,
    PlattScaling,
    Selection,
    TemperatureScaling,
    fit_best,
    from_params,
)
from pipeline.calibration.collapse import (
    CollapseCheck,
    CollapseRule,
    CollapseState,
    RollingCollapseDetector,
    assess_window,
    signal_informative,
)
from pipeline.calibration.metrics import (
    Estimate,
    PrecisionCoverage,
    ReliabilityBin,
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
from pipeline.calibration.profile import (
    CalibrationProfile,
    ProfileBody,
    ProfileStore,
    build_profile,
)
from pipeline.calibration.report import (
    EvaluationResult,
    ReportFiles,
    render_html,
    render_plots,
    to_json,
    write_report,
)

__all__ = [
    "CalibrationProfile",
    "Calibrator",
    "CalibratorParams",
    "CandidateScore",
    "CollapseCheck",
    "CollapseRule",
    "CollapseState",
    "Estimate",
    "EvaluationResult",
    "Identity",
    "IsotonicCalibrator",
    "PlattScaling",
    "PrecisionCoverage",
    "ProfileBody",
    "ProfileStore",
    "ReliabilityBin",
    "ReportFiles",
    "RollingCollapseDetector",
    "Selection",
    "SignalMetrics",
    "TemperatureScaling",
    "assess_window",
    "bootstrap_ci",
    "brier",
    "build_profile",
    "ece",
    "fit_best",
    "from_params",
    "mce",
    "nll",
    "precision_coverage",
    "reliability_bins",
    "render_html",
    "render_plots",
    "roc_auc",
    "sce",
    "share_at",
    "signal_informative",
    "summarize",
    "threshold_for_precision",
    "to_json",
    "write_report",
]
