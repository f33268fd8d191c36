"""`quoteguard moderate` and `quoteguard demo` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.sim.server import SimServer
from tests.hostile import hostile_lines

VIOLATION = "You are a worthless idiot and nobody wants you here."


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer() as server:
        yield server


def quoteguard(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs the installed CLI in a fresh process, as a user would."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("QUOTEGUARD_", "OPENAI_"))}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
        check=False,
    )


class TestModerate:
    def test_bad_lines_each_get_an_error_decision_and_the_rest_completes(
        self, sim: SimServer, tmp_path: Path
    ) -> None:
        """Every non-blank line yields exactly one Decision; exit code 0 though items failed."""
        lines = [
            json.dumps({"id": "good", "text": VIOLATION}).encode(),
            json.dumps({"id": "empty", "text": ""}).encode(),
            json.dumps({"id": "ctrl", "text": "hi\u0000\u202e there"}).encode(),
            b'{"id": "utf8", "text": "caf\xe9"}',
            b'{"id": "broken", "text": ',
            json.dumps({"text": "no id"}).encode(),
            json.dumps({"id": "good", "text": "duplicate"}).encode(),
            json.dumps({"id": "big", "text": "x" * 1_048_576}).encode(),
            b"",
        ]
        items = tmp_path / "items.jsonl"
        items.write_bytes(b"\n".join(lines) + b"\n")
        out = tmp_path / "decisions.jsonl"
        done = quoteguard(
            "moderate",
            str(items),
            "--out",
            str(out),
            "--model",
            "sim-calibrated",
            "--base-url",
            sim.base_url,
            env={"OPENAI_API_KEY": "sk-testsecret123456"},
        )
        assert done.returncode == 0, done.stderr
        decisions = [json.loads(line) for line in out.read_text().splitlines()]
        by_id = {d["item_id"]: d for d in decisions}
        assert len(decisions) == 8
        assert by_id["good"]["outcome"] == "human_review"
        assert by_id["ctrl"]["outcome"] in {"no_violation", "human_review"}
        for item_id in (
            "empty",
            "big",
            "items.jsonl:4",
            "items.jsonl:5",
            "items.jsonl:6",
            "items.jsonl:7",
        ):
            assert by_id[item_id]["outcome"] == "error", item_id
            assert by_id[item_id]["errors"][0]["kind"] == "invalid_input"
        assert "invalid UTF-8" in by_id["items.jsonl:4"]["errors"][0]["message"]
        assert "duplicate id 'good'" in by_id["items.jsonl:7"]["errors"][0]["message"]
        assert "sk-testsecret123456" not in done.stderr + done.stdout
        assert "\u202e" not in done.stderr

    def test_hostile_corpus_gives_one_decision_per_line(
        self, sim: SimServer, tmp_path: Path
    ) -> None:
        """Nesting, surrogates, odd ids and terminal attacks: a Decision each, a clean stderr."""
        lines = hostile_lines()
        items = tmp_path / "items.jsonl"
        items.write_bytes(b"\n".join(lines) + b"\n")
        out = tmp_path / "decisions.jsonl"
        done = quoteguard(
            "moderate",
            str(items),
            "--out",
            str(out),
            "--base-url",
            sim.base_url,
            "--model",
            "sim-calibrated",
            env={"OPENAI_API_KEY": "sim-key", "QUOTEGUARD_LOG_LEVEL": "info"},
        )
        assert done.returncode == 0, done.stderr
        decisions = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(decisions) == len(lines)
        by_id = {d["item_id"]: d for d in decisions}
        assert by_id["42"]["outcome"] != "error"
        assert "lone surrogate" in by_id["surrogate-text"]["errors"][0]["message"]
        assert "lone surrogate" in by_id["items.jsonl:4"]["errors"][0]["message"]
        for raw in ("\x1b", "\x07", "\u202e"):
            assert raw not in done.stderr

    def test_missing_api_key_is_a_usage_error(self, tmp_path: Path) -> None:
        """Pointing at OpenAI without a key fails fast with exit code 2 and says what to set."""
        items = tmp_path / "items.jsonl"
        items.write_text('{"id": "a", "text": "hi"}\n')
        done = quoteguard("moderate", str(items), "--out", str(tmp_path / "o.jsonl"))
        assert done.returncode == 2
        assert "OPENAI_API_KEY" in done.stderr

    def test_missing_input_file_is_a_usage_error(self, tmp_path: Path) -> None:
        """A path that does not exist is refused before anything runs."""
        done = quoteguard("moderate", str(tmp_path / "nope.jsonl"))
        assert done.returncode == 2


class TestDemo:
    def test_demo_runs_the_bundled_set_and_writes_decisions(self, tmp_path: Path) -> None:
        """`quoteguard demo` prints the summary table and writes one Decision per example."""
        done = quoteguard("demo", "--out", "decisions.jsonl", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        decisions = [
            json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()
        ]
        demo_items = (
            (Path(__file__).parents[1] / "pipeline" / "data" / "demo.jsonl")
            .read_text()
            .splitlines()
        )
        assert len(decisions) == len([line for line in demo_items if line.strip()]) >= 30
        outcomes = {d["outcome"] for d in decisions}
        assert {"no_violation", "human_review"} <= outcomes
        assert "hallucinated rules" in done.stderr
        assert "ungrounded quotes" in done.stderr
