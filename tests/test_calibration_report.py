"""Reports: fixed-size PNGs, a self-contained HTML page that escapes everything, JSON."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from pipeline.calibration.metrics import FloatArray, summarize
from pipeline.calibration.report import (
    EvaluationResult,
    ReportFiles,
    render_html,
    roc_points,
    to_json,
    verdict_logprobs,
    write_report,
)

HOSTILE = "<script>alert(1)</script>"
MATHTEXT = r"$\frac{unbalanced"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def labelled(n: int, seed: int, sharpen: float = 1.0) -> tuple[FloatArray, FloatArray]:
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    y = (rng.random(n) < p).astype(np.float64)
    z = np.log(p) - np.log1p(-p)
    return np.asarray(1.0 / (1.0 + np.exp(-sharpen * z)), dtype=np.float64), y


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which always follows the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def result(name: str, seed: int, **kwargs: float) -> EvaluationResult:
    p, y = labelled(200, seed, **kwargs)
    return EvaluationResult.evaluate(name, p, y, n_bootstrap=50)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> ReportFiles:
    """One report comparing three signals with hostile names, written once for the module."""
    collapsed_y = np.array([1.0, 0.0] * 50)
    results = [
        EvaluationResult.evaluate(
            HOSTILE,
            *labelled(300, seed=0),
            extra={
                "accuracy": 0.9,
                "per_rule": {HOSTILE: {"precision": 0.5, "recall": None}},
                "notes": ['<img src="https://evil.example/x.png">', "\x1b[31mred"],
            },
            n_bootstrap=50,
        ),
        result(MATHTEXT, seed=1, sharpen=3.0),
        EvaluationResult.evaluate("_collapsed", np.ones(100), collapsed_y, n_bootstrap=50),
    ]
    return write_report(results, tmp_path_factory.mktemp("report"), title=f"compare {HOSTILE}")


class TestWriteReport:
    def test_every_file_exists_and_is_not_empty(self, report: ReportFiles) -> None:
        """HTML, JSON and one PNG per plot (a histogram per result) are written."""
        names = sorted(report.images)
        assert names == [
            "logprob_hist_0.png",
            "logprob_hist_1.png",
            "logprob_hist_2.png",
            "precision_coverage.png",
            "reliability.png",
            "roc.png",
        ]
        for path in [report.html, report.json, *report.images.values()]:
            assert path.is_file()
            assert path.stat().st_size > 0

    def test_pngs_are_600_by_400(self, report: ReportFiles) -> None:
        """Every plot is 6 x 4 inches at 100 dpi, whatever its legend holds."""
        for path in report.images.values():
            assert png_size(path) == (600, 400), path.name

    def test_pngs_carry_no_urls(self, report: ReportFiles) -> None:
        """The PNGs have no Software chunk naming a version and a URL."""
        for path in report.images.values():
            assert b"http" not in path.read_bytes()

    def test_html_fetches_nothing(self, report: ReportFiles) -> None:
        """No src or href points at the network: images are data URIs."""
        page = report.html.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
        assert page.count('src="data:image/png;base64,') == len(report.images)
        assert "<link" not in page
        assert "@import" not in page

    def test_html_forbids_scripts(self, report: ReportFiles) -> None:
        """A Content-Security-Policy allows data images and inline style, nothing else."""
        page = report.html.read_text(encoding="utf-8")
        assert "default-src 'none'" in page

    def test_hostile_strings_are_escaped(self, report: ReportFiles) -> None:
        """Names, title, extra keys and values appear escaped, never as markup."""
        page = report.html.read_text(encoding="utf-8")
        assert HOSTILE not in page
        assert "<script" not in page.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert '<img src="https://evil' not in page
        assert "&lt;img src=&quot;https://evil.example/x.png&quot;&gt;" in page

    def test_control_characters_are_removed(self, report: ReportFiles) -> None:
        """An escape sequence in an extra value does not reach the page."""
        assert "\x1b" not in report.html.read_text(encoding="utf-8")

    def test_json_has_every_result(self, report: ReportFiles) -> None:
        """report.json parses and carries names, metrics, extras and bins."""
        doc = json.loads(report.json.read_text(encoding="utf-8"))
        assert [r["name"] for r in doc["results"]] == [HOSTILE, MATHTEXT, "_collapsed"]
        first = doc["results"][0]
        assert first["extra"]["accuracy"] == 0.9
        assert first["metrics"]["n"] == 300
        assert sum(b["count"] for b in first["reliability"]) == 300

    def test_refuses_an_empty_report(self, tmp_path: Path) -> None:
        """No results, no report."""
        with pytest.raises(ValueError, match="at least one"):
            write_report([], tmp_path)


class TestRenderHtml:
    def test_without_plots_still_renders(self) -> None:
        """The page renders from metrics alone (plots are optional inputs)."""
        page = render_html([result("a & b", seed=2)], plots={})
        assert "a &amp; b" in page
        assert "<img" not in page

    def test_one_class_result_renders(self) -> None:
        """A set with no spurious findings has no AUC: shown as n/a, no crash."""
        p = np.array([0.6, 0.7, 0.9])
        r = EvaluationResult.evaluate("one class", p, np.ones(3), n_bootstrap=20)
        assert "n/a" in render_html([r], plots={})


class TestToJson:
    def test_is_plain_json(self) -> None:
        """to_json is parseable text with metrics in the SignalMetrics shape."""
        doc = json.loads(to_json([result("x", seed=3)]))
        assert set(doc["results"][0]["metrics"]) >= {"ece", "auc", "share_at_0999", "n_bins"}


class TestEvaluationResult:
    def test_metrics_must_describe_the_arrays(self) -> None:
        """Metrics computed on another set are refused."""
        p, y = labelled(50, seed=4)
        other = summarize(p[:40], y[:40], n_bootstrap=10)
        with pytest.raises(ValueError, match="metrics computed on 40"):
            EvaluationResult(name="x", p=p, y=y, metrics=other)


class TestRocPoints:
    def test_matches_sklearn_roc_curve(self) -> None:
        """Every (fpr, tpr) point equals sklearn's roc_curve without point dropping."""
        p, y = labelled(300, seed=5)
        p = np.round(p, 2)  # ties
        fpr, tpr = roc_points(p, y)
        ref_fpr, ref_tpr, _ = roc_curve(y, p, drop_intermediate=False)
        np.testing.assert_allclose(fpr, ref_fpr)
        np.testing.assert_allclose(tpr, ref_tpr)

    def test_one_class_has_no_curve(self) -> None:
        """Without both classes there is no ROC curve."""
        with pytest.raises(ValueError, match="both classes"):
            roc_points([0.2, 0.8], [1.0, 1.0])


class TestVerdictLogprobs:
    def test_logprob_of_the_favoured_verdict(self) -> None:
        """log max(p, 1 - p): 0 for a certain verdict, log 0.5 for a coin."""
        out = verdict_logprobs(np.array([1.0, 0.0, 0.5, 0.9]))
        np.testing.assert_allclose(out, [0.0, 0.0, np.log(0.5), np.log(0.9)])
