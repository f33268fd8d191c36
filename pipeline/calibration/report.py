"""Evaluation reports: PNG plots and one self-contained HTML page, plus JSON.

The page must open with no network (plots are base64 data URIs, styles inline, nothing
fetched) and must never execute what it shows: names, rule ids and extra values come from
moderated content and policy files, so every string goes through `html.escape`, and a
Content-Security-Policy forbids scripts even if something slipped through.

matplotlib is imported lazily and used through `Figure` (no pyplot): importing a profile in
a worker must not load a plotting stack, and pyplot's global state is not thread-safe.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydantic import JsonValue

from pipeline.calibration.metrics import (
    BinStrategy,
    Estimate,
    FloatArray,
    SignalMetrics,
    as_arrays,
    precision_coverage,
    reliability_bins,
    summarize,
)
from pipeline.defaults import DEFAULT_BINS, DEFAULT_BOOTSTRAP

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: 6 x 4 inches at 100 dpi: every PNG is exactly 600 x 400 pixels.
FIG_SIZE_IN = (6.0, 4.0)
FIG_DPI = 100
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MAX_LABEL = 40


@dataclass(frozen=True)
class EvaluationResult:
    """One named signal on one labelled set: raw arrays, their metrics, anything extra."""

    name: str
    p: FloatArray
    y: FloatArray
    metrics: SignalMetrics
    extra: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        pa, ya = as_arrays(self.p, self.y)
        if pa.size != self.metrics.n:
            raise ValueError(f"{pa.size} items but metrics computed on {self.metrics.n}")
        # Frozen, so normalise through object.__setattr__: lists in, float arrays kept.
        object.__setattr__(self, "p", pa)
        object.__setattr__(self, "y", ya)

    @classmethod
    def evaluate(
        cls,
        name: str,
        p: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        extra: Mapping[str, JsonValue] | None = None,
        n_bins: int = DEFAULT_BINS,
        strategy: BinStrategy = "uniform",
        seed: int = 0,
        n_bootstrap: int = DEFAULT_BOOTSTRAP,
    ) -> EvaluationResult:
        pa, ya = as_arrays(p, y)
        metrics = summarize(pa, ya, n_bins, seed, strategy=strategy, n_bootstrap=n_bootstrap)
        return cls(name=name, p=pa, y=ya, metrics=metrics, extra=dict(extra or {}))


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    json: Path
    images: dict[str, Path]


# ----------------------------------------------------------------------------- json


def to_json(results: Sequence[EvaluationResult]) -> str:
    """Metrics, extras and reliability bins of every result (not the raw arrays)."""
    doc = {
        "results": [
            {
                "name": r.name,
                "metrics": r.metrics.model_dump(mode="json"),
                "extra": dict(r.extra),
                "reliability": [
                    b.model_dump(mode="json")
                    for b in reliability_bins(r.p, r.y, r.metrics.n_bins, r.metrics.strategy)
                ],
            }
            for r in results
        ]
    }
    return json.dumps(doc, indent=2, allow_nan=False)


# ----------------------------------------------------------------------------- plots


def _plot_text(s: str) -> str:
    """A name made safe for matplotlib: no mathtext ($), no legend-hiding leading '_'."""
    s = _CONTROL.sub("\ufffd", s).replace("$", r"\$")
    if len(s) > _MAX_LABEL:
        s = s[: _MAX_LABEL - 1] + "…"
    return " " + s if s.startswith("_") else s


def _figure() -> Figure:
    from matplotlib.figure import Figure  # noqa: PLC0415  (lazy: see module docstring)

    return Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI, layout="constrained")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No "Software" chunk: the PNG then carries no version string or URL, and the same
    # data gives the same bytes across matplotlib patch releases.
    fig.savefig(buf, format="png", dpi=FIG_DPI, metadata={"Software": None})
    return buf.getvalue()


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def plot_reliability(results: Sequence[EvaluationResult]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    for r in results:
        bins = [
            b for b in reliability_bins(r.p, r.y, r.metrics.n_bins, r.metrics.strategy) if b.count
        ]
        conf = [b.mean_confidence for b in bins if b.mean_confidence is not None]
        acc = [b.accuracy for b in bins if b.accuracy is not None]
        label = f"{_plot_text(r.name)} (ECE {_fmt(r.metrics.ece.value)})"
        ax.plot(conf, acc, marker="o", label=label)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean p_true in bin", ylabel="share true")
    ax.set_title("Reliability")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def roc_points(p: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(fpr, tpr) at every distinct threshold, from (0, 0): sklearn's `roc_curve` with
    drop_intermediate=False, read off the precision/coverage curve we already compute."""
    pa, ya = as_arrays(p, y)
    n_pos = float(ya.sum())
    n_neg = float(ya.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("a ROC curve needs both classes")
    curve = precision_coverage(pa, ya)
    true_pos = np.rint(curve.precision * curve.support)
    fpr = np.append(0.0, (curve.support - true_pos) / n_neg)
    tpr = np.append(0.0, true_pos / n_pos)
    return fpr, tpr


def plot_roc(results: Sequence[EvaluationResult]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    for r in results:
        if r.metrics.auc.value is None:
            continue  # one class only: there is no curve to draw
        fpr, tpr = roc_points(r.p, r.y)
        ax.plot(fpr, tpr, label=f"{_plot_text(r.name)} (AUC {_fmt(r.metrics.auc.value)})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="false positive rate", ylabel="true positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right", fontsize="small")
    return _png(fig)


def plot_precision_coverage(results: Sequence[EvaluationResult]) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    for r in results:
        curve = precision_coverage(r.p, r.y)
        # A collapsed signal is a single tie group, one point: give it a marker to be seen.
        marker = "o" if curve.coverage.size < 20 else None
        ax.step(
            curve.coverage, curve.precision, where="post", marker=marker, label=_plot_text(r.name)
        )
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="coverage (share auto-actioned)")
    ax.set(ylabel="precision")
    ax.set_title("Precision vs coverage (most confident first)")
    ax.legend(loc="lower left", fontsize="small")
    return _png(fig)


def verdict_logprobs(p: FloatArray) -> FloatArray:
    """log p of the verdict the probability favours: log(max(p, 1 - p)), in [log 0.5, 0]."""
    return np.asarray(np.log(np.maximum(p, 1.0 - p)), dtype=np.float64)


def plot_logprob_histogram(result: EvaluationResult) -> bytes:
    """Verdict logprobs, correct and incorrect apart: a collapsed model is one spike at 0."""
    lp = verdict_logprobs(result.p)
    correct = (result.p >= 0.5) == (result.y == 1.0)
    edges = np.linspace(math.log(0.5), 0.0, 41).tolist()
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(lp[correct], bins=edges, alpha=0.6, label=f"correct ({int(correct.sum())})")
    ax.hist(lp[~correct], bins=edges, alpha=0.6, label=f"incorrect ({int((~correct).sum())})")
    ax.set(xlabel="logprob of the chosen verdict", ylabel="findings")
    ax.set_title(f"Verdict logprobs: {_plot_text(result.name)}")
    ax.legend(loc="upper left", fontsize="small")
    return _png(fig)


def render_plots(results: Sequence[EvaluationResult]) -> dict[str, bytes]:
    """PNG bytes by file name. Names are fixed or indexed, never built from result names."""
    plots = {
        "reliability.png": plot_reliability(results),
        "roc.png": plot_roc(results),
        "precision_coverage.png": plot_precision_coverage(results),
    }
    for i, r in enumerate(results):
        plots[f"logprob_hist_{i}.png"] = plot_logprob_histogram(r)
    return plots


# ----------------------------------------------------------------------------- html

_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5em; }
</style>
</head>
<body>
<h1>$title</h1>
<h2>Summary</h2>
$summary
<h2>Plots</h2>
$plots
$details
</body>
</html>
""")

_METRICS = ("ece", "mce", "sce", "brier", "nll", "auc")


def _esc(value: object) -> str:
    """Every inserted string goes through here: control characters out, markup escaped."""
    return html.escape(_CONTROL.sub("\ufffd", str(value)), quote=True)


def _cell(e: Estimate) -> str:
    if e.value is None:
        return "n/a"
    ci = "" if e.low is None or e.high is None else f" [{e.low:.4f}, {e.high:.4f}]"
    return _esc(f"{e.value:.4f}{ci}")


def _summary_table(results: Sequence[EvaluationResult]) -> str:
    level = f"{results[0].metrics.ci_level:.0%}" if results else ""
    head = "".join(f"<th>{m.upper()}</th>" for m in _METRICS)
    rows = []
    for r in results:
        m = r.metrics
        cells = "".join(f'<td class="num">{_cell(getattr(m, k))}</td>' for k in _METRICS)
        rows.append(
            f"<tr><td>{_esc(r.name)}</td><td class='num'>{m.n}</td>"
            f"<td class='num'>{m.n_positive}</td>{cells}"
            f"<td class='num'>{m.share_at_0999:.3f}</td></tr>"
        )
    binning = f"{results[0].metrics.n_bins} {results[0].metrics.strategy} bins" if results else ""
    return (
        f"<p>Intervals: {_esc(level)} bootstrap. Calibration errors over {_esc(binning)}.</p>"
        f"<table><tr><th>name</th><th>n</th><th>true</th>{head}<th>share p≥0.999</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _value_html(value: JsonValue) -> str:
    """Any JSON value as nested tables and lists, every leaf escaped."""
    if isinstance(value, dict):
        rows = "".join(
            f"<tr><th>{_esc(k)}</th><td>{_value_html(v)}</td></tr>" for k, v in value.items()
        )
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        return "<ul>" + "".join(f"<li>{_value_html(v)}</li>" for v in value) + "</ul>"
    if isinstance(value, float):
        return _esc(f"{value:.4g}")
    return _esc("null" if value is None else value)


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{_esc(alt)}" width="{int(FIG_SIZE_IN[0] * FIG_DPI)}" '
        f'height="{int(FIG_SIZE_IN[1] * FIG_DPI)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{_esc(name)}</figcaption></figure>"
    )


def render_html(
    results: Sequence[EvaluationResult],
    plots: Mapping[str, bytes],
    title: str = "quoteguard calibration report",
) -> str:
    shared = ("reliability.png", "roc.png", "precision_coverage.png")
    figures = "".join(_img(n, plots[n], n.removesuffix(".png")) for n in shared if n in plots)
    details = []
    for i, r in enumerate(results):
        hist = plots.get(f"logprob_hist_{i}.png")
        parts = [f"<section><h2>{_esc(r.name)}</h2>"]
        if hist is not None:
            parts.append(_img(f"logprob_hist_{i}.png", hist, f"verdict logprobs of {r.name}"))
        if r.extra:
            parts.append(f"<h3>Extra</h3>{_value_html(dict(r.extra))}")
        parts.append("</section>")
        details.append("".join(parts))
    return _PAGE.substitute(
        title=_esc(title),
        summary=_summary_table(results),
        plots=figures,
        details="\n".join(details),
    )


def write_report(
    results: Sequence[EvaluationResult],
    out_dir: Path | str,
    title: str = "quoteguard calibration report",
) -> ReportFiles:
    """Write every PNG, report.html (self-contained) and report.json into `out_dir`."""
    if not results:
        raise ValueError("a report needs at least one evaluation result")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = render_plots(results)
    images: dict[str, Path] = {}
    for name, png in plots.items():
        images[name] = out / name
        images[name].write_bytes(png)
    html_path = out / "report.html"
    html_path.write_text(render_html(results, plots, title), encoding="utf-8")
    json_path = out / "report.json"
    json_path.write_text(to_json(results), encoding="utf-8")
    return ReportFiles(html=html_path, json=json_path, images=images)
