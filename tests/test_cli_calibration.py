"""`quoteguard eval | calibrate | compare` end to end against the simulated model.

The simulator runs as `quoteguard sim serve` in its own process, as a user would run it,
so it does not share this process's GIL with the client. The golden splits come from
`pipeline.sim.golden`. The calibration splits are 1000 items each: the simulated model
makes ~20 spurious violations per 1000 items, and with 600-item splits the held-out ECE
is lower after calibration for only 15 of 20 split pairs (20 of 20 at 1000).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from pipeline.calibration import ProfileStore
from pipeline.cli import app
from pipeline.config import load_settings
from pipeline.llm import LLMClient
from pipeline.models import ContentItem
from pipeline.policies import load_policies
from pipeline.runner import Moderator
from pipeline.sim.golden import generate_from_policies, write_jsonl
from pipeline.standing import SignalWatch

VIOLATION = "You are a worthless idiot and nobody wants you here."
#: Fewer bootstrap resamples than the default 1000: intervals are not under test here.
FAST = ["--bootstrap", "100"]
#: The verdict signal needs the two verdict alternatives only; fewer top_logprobs halve the
#: client's parsing time.
ENV = {"QUOTEGUARD_TOP_LOGPROBS": "2", "QUOTEGUARD_LOG_LEVEL": "warning"}


@dataclass(frozen=True)
class Sim:
    base_url: str
    root: str

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.root}/sim/stats").json()
        return stats


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "sim", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{root}/health", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "sim server exited"
                assert time.monotonic() < deadline, "sim server did not start"
                time.sleep(0.1)
        yield Sim(f"{root}/v1", root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass(frozen=True)
class Workspace:
    root: Path
    golden_a: Path  # calibration split
    golden_b: Path  # held-out evaluation split
    golden_c: Path  # small split for the collapsed model and the gate
    golden_d: Path  # tiny split for fallback sampling
    cache: Path
    profiles: Path


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("calibration")
    policies = load_policies()
    paths = []
    for name, n, seed in (("a", 1000, 1), ("b", 1000, 2), ("c", 300, 3), ("d", 80, 4)):
        path = root / f"golden-{name}.jsonl"
        write_jsonl(generate_from_policies(policies, n, seed), path)
        paths.append(path)
    return Workspace(root, *paths, cache=root / "cache", profiles=root / "profiles")


def run(*args: str | Path) -> Any:
    """The command in this process, as the installed `quoteguard` would run it."""
    return CliRunner().invoke(app, [str(a) for a in args], env=ENV)


def common(ws: Workspace, sim: Sim) -> list[str | Path]:
    return ["--base-url", sim.base_url, "--cache-dir", ws.cache, "--profiles", ws.profiles]


def report(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((directory / "report.json").read_text())
    return doc


def only_profile(ws: Workspace, model: str) -> dict[str, Any]:
    (path,) = ws.profiles.glob(f"{model}-2026*.json")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def base_env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTEGUARD_", "OPENAI_"))}
    return {**clean, **ENV}


@pytest.fixture(scope="module")
def calibrated(ws: Workspace, sim: Sim) -> dict[str, Any]:
    """sim-calibrated fitted on split A.

    Meanwhile a second process moderates split B into the shared cache (the cache key does
    not involve profiles while the fallback is off), so the held-out eval below needs no
    model calls: two clients on two cores, instead of one after the other.
    """
    warm = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "eval", "--golden", str(ws.golden_b), "--model",
         "sim-calibrated", "--base-url", sim.base_url, "--cache-dir", str(ws.cache),
         "--bootstrap", "10", "--out-dir", str(ws.root / "warm-b")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=base_env(),
    )  # fmt: skip
    done = run("calibrate", "--golden", ws.golden_a, "--model", "sim-calibrated",
               *common(ws, sim), *FAST)  # fmt: skip
    _, warm_err = warm.communicate(timeout=300)
    assert warm.returncode == 0, warm_err
    assert done.exit_code == 0, done.output
    return only_profile(ws, "sim-calibrated")


@pytest.fixture(scope="module")
def held_out(ws: Workspace, sim: Sim, calibrated: dict[str, Any]) -> Path:
    """sim-calibrated evaluated on split B with the profile from split A."""
    out = ws.root / "eval-b"
    done = run("eval", "--golden", ws.golden_b, "--model", "sim-calibrated", "--out-dir", out,
               *common(ws, sim), *FAST)  # fmt: skip
    assert done.exit_code == 0, done.output
    return out


@pytest.fixture(scope="module")
def collapsed(ws: Workspace, sim: Sim) -> dict[str, Any]:
    """sim-collapsed fitted on split C."""
    done = run(
        "calibrate", "--golden", ws.golden_c, "--model", "sim-collapsed", *common(ws, sim), *FAST
    )
    assert done.exit_code == 0, done.output
    return only_profile(ws, "sim-collapsed")


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


class TestCalibrate:
    def test_profile_is_bound_to_the_served_version_and_golden_set(
        self, ws: Workspace, calibrated: dict[str, Any]
    ) -> None:
        """The profile names the served model id, fingerprint and the golden file's hash."""
        assert calibrated["served_model"] == "sim-calibrated-2026-11-01"
        assert calibrated["system_fingerprint"] == "fp_simcal1"
        assert calibrated["golden_hash"] == hashlib.sha256(ws.golden_a.read_bytes()).hexdigest()
        assert calibrated["informative"] is True
        assert calibrated["auto_action_threshold"] is not None
        assert {c["kind"] for c in calibrated["candidates"]} >= {"temperature", "platt"}

    def test_calibrated_ece_is_lower_than_raw_on_a_held_out_split(self, held_out: Path) -> None:
        """Fitted on split A, scored on split B: calibration lowers equal-mass ECE and Brier."""
        raw, calibrated = report(held_out)["results"]
        assert calibrated["extra"]["same_golden_as_profile"] is False
        # Equal-mass, not equal-width: ~95% of the units sit above p = 0.93, so the other
        # equal-width bins hold a handful of units each and that ECE is mostly noise at this
        # size (lower after calibration for only 13 of 20 split pairs; equal-mass and Brier
        # for 20 of 20, with the simulator of this commit).
        assert (
            calibrated["extra"]["ece_equal_mass"]["value"] < raw["extra"]["ece_equal_mass"]["value"]
        )
        assert calibrated["metrics"]["brier"]["value"] < raw["metrics"]["brier"]["value"]
        assert raw["metrics"]["n_bins"] == 15
        assert raw["extra"]["bins"] == {"equal_width": 15, "equal_mass": 15}

    def test_collapsed_version_is_not_informative(self, collapsed: dict[str, Any]) -> None:
        """The collapsed model's profile says its signal is flat and allows no auto action."""
        assert collapsed["informative"] is False
        assert collapsed["auto_action_threshold"] is None
        assert collapsed["metrics_raw"]["share_at_0999"] == 1.0
        assert any("spread" in r for r in collapsed["collapse"]["reasons"])

    def test_collapsed_profile_never_auto_actions(
        self, ws: Workspace, sim: Sim, collapsed: dict[str, Any]
    ) -> None:
        """With its profile loaded, a clear violation from the collapsed model is reviewed."""
        settings = load_settings(model="sim-collapsed", base_url=sim.base_url, api_key="k")
        watch = SignalWatch(ProfileStore.load(ws.profiles))
        with Moderator(settings, load_policies(), LLMClient(settings), watch) as mod:
            decision = mod.moderate(ContentItem(id="a", text=VIOLATION))
        assert decision.profile_id == collapsed["profile_id"]
        assert decision.outcome == "human_review"
        assert "signal_collapsed" in decision.reasons


class TestEval:
    def test_report_states_pipeline_metrics(self, held_out: Path) -> None:
        """Accuracy, per-rule scores, grounding, hallucination and the signal unit are reported."""
        raw = report(held_out)["results"][0]["extra"]
        scores = raw["pipeline"]
        assert scores["items"] == 1000
        assert 0.9 < scores["item"]["accuracy"] <= 1.0
        assert scores["per_rule"]
        assert all("precision" in r for r in scores["per_rule"].values())
        assert scores["grounding_rate"] == 1.0
        assert scores["hallucinated_rule_rate"] == 0.0
        assert scores["fallback"]["extra_calls_per_item"] == 0.0
        assert "verdict true" in raw["signal"]["unit"]
        assert [p["target"] for p in raw["precision_at_coverage"]] == [0.1, 0.25, 0.5, 0.75, 1.0]

    def test_plots_exist_with_the_right_size(self, held_out: Path) -> None:
        """Every plot is a non-empty 600x400 PNG."""
        names = {"reliability.png", "roc.png", "precision_coverage.png", "logprob_hist_0.png"}
        for name in names:
            path = held_out / name
            assert path.stat().st_size > 1000, name
            assert png_size(path) == (600, 400), name

    def test_html_report_needs_no_network(self, held_out: Path) -> None:
        """The page fetches nothing: images are data URIs, no scripts, links or remote URLs."""
        page = (held_out / "report.html").read_text()
        without_images = re.sub(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', "", page)
        assert "src=" not in without_images
        assert not re.search(r"https?://|<script|<link|@import|url\(", without_images)
        assert page.count("data:image/png;base64,") >= 4

    @pytest.mark.usefixtures("held_out")
    def test_rerun_makes_no_model_calls(self, ws: Workspace, sim: Sim) -> None:
        """A second eval of the same set is served from the cache: the simulator sees nothing."""
        before = sim.stats()["requests"]
        out = ws.root / "eval-b-again"
        done = run("eval", "--golden", ws.golden_b, "--model", "sim-calibrated", "--out-dir", out,
                   *common(ws, sim), *FAST)  # fmt: skip
        assert done.exit_code == 0, done.output
        assert sim.stats()["requests"] == before
        run_facts = report(out)["results"][0]["extra"]["run"]
        assert run_facts == run_facts | {
            "cached_items": 1000,
            "fresh_items": 0,
            "calls_this_run": 0,
        }


def gate_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    (gate,) = [r["extra"]["gate"] for r in results if "gate" in r["extra"]]
    return dict(gate)


@pytest.fixture(scope="module")
def compared_collapsed(ws: Workspace, sim: Sim, collapsed: dict[str, Any]) -> tuple[int, Path]:
    """Exit code and report of compare sim-calibrated -> sim-collapsed on split C."""
    out = ws.root / "cmp-collapsed"
    models = ["--model", "sim-calibrated", "--model", "sim-collapsed"]
    done = run("compare", "--golden", ws.golden_c, *models, "--out-dir", out,
               *common(ws, sim), *FAST)  # fmt: skip
    assert collapsed["informative"] is False
    return done.exit_code, out


class TestCompare:
    def test_collapsed_upgrade_fails_the_gate(self, compared_collapsed: tuple[int, Path]) -> None:
        """sim-calibrated -> sim-collapsed exits 1 and names the collapsed signal."""
        code, out = compared_collapsed
        assert code == 1
        results = {r["name"]: r for r in report(out)["results"]}
        gate = gate_of(list(results.values()))
        assert gate["passed"] is False
        assert any(r.startswith("signal_collapsed") for r in gate["reasons"])
        old_auc = results["sim-calibrated: raw p_true"]["metrics"]["auc"]["value"]
        new_auc = results["sim-collapsed: raw p_true"]["metrics"]["auc"]["value"]
        assert old_auc > 0.8 > new_auc

    @pytest.mark.usefixtures("compared_collapsed")
    def test_same_version_passes_from_cache(self, ws: Workspace, sim: Sim) -> None:
        """sim-calibrated -> sim-calibrated exits 0; both sides come from the cache."""
        before = sim.stats()["requests"]
        out = ws.root / "cmp-same"
        models = ["--model", "sim-calibrated", "--model", "sim-calibrated"]
        done = run("compare", "--golden", ws.golden_c, *models, "--out-dir", out,
                   *common(ws, sim), *FAST)  # fmt: skip
        assert done.exit_code == 0, done.output
        assert sim.stats()["requests"] == before
        assert gate_of(report(out)["results"])["passed"] is True

    def test_compare_needs_two_models(self, ws: Workspace, sim: Sim) -> None:
        """One --model is a usage error (exit 2)."""
        done = run(
            "compare", "--golden", ws.golden_c, "--model", "sim-calibrated", *common(ws, sim)
        )
        assert done.exit_code == 2


class TestFallback:
    @pytest.mark.usefixtures("collapsed")
    def test_only_borderline_items_pay_and_the_rate_is_reported(
        self, ws: Workspace, sim: Sim
    ) -> None:
        """Collapsed version: exactly the items with a valid violation get one extra call."""
        before = sim.stats()["requests"]
        out = ws.root / "fallback"
        done = run("eval", "--golden", ws.golden_d, "--model", "sim-collapsed", "--fallback",
                   "--out-dir", out, *common(ws, sim), *FAST)  # fmt: skip
        assert done.exit_code == 0, done.output
        cache_file = Path(report(out)["results"][0]["extra"]["run"]["cache_file"])
        decisions = [json.loads(line)["decision"] for line in cache_file.read_text().splitlines()]
        sampled = [d for d in decisions if d["fallback"]]
        for d in decisions:
            has_valid_violation = any(
                f["verdict"] and f["citation"]["exists"] and all(q["match"] for q in f["quotes"])
                for f in d["findings"]
            )
            assert bool(d["fallback"]) == has_valid_violation, d["item_id"]
        assert all(d["fallback"]["reason"] == "signal_collapsed" for d in sampled)
        assert len(decisions) == 80
        assert 0 < len(sampled) < 80
        assert sim.stats()["requests"] - before == 80 + len(sampled)
        fallback = report(out)["results"][0]["extra"]["pipeline"]["fallback"]
        assert fallback["sampled_items"] == len(sampled)
        assert fallback["extra_calls_per_item"] == pytest.approx(len(sampled) / 80)
        assert fallback["auc"] is not None


class TestNewcomer:
    def test_eval_with_sim_flag_needs_no_server(self, tmp_path: Path) -> None:
        """`quoteguard eval --sim` starts its own simulator and writes the report."""
        golden = tmp_path / "g.jsonl"
        write_jsonl(generate_from_policies(load_policies(), 12, 9), golden)
        done = run("eval", "--golden", golden, "--model", "sim-calibrated", "--sim", "--bootstrap",
                   "20", "--out-dir", tmp_path / "r", "--cache-dir", tmp_path / "c")  # fmt: skip
        assert done.exit_code == 0, done.output
        assert (tmp_path / "r" / "report.html").stat().st_size > 0
        assert report(tmp_path / "r")["results"][0]["extra"]["pipeline"]["items"] == 12
