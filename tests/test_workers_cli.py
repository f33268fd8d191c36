"""The ops commands in-process (typer's runner) against real Redis: results and review."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
import structlog
from typer.testing import CliRunner

from tests.fixtures_workers import make_decision, make_item
from workers.cli import app
from workers.results import Results
from workers.settings import worker_settings
from workers.transport import UNDECODABLE

pytest_plugins = ["tests.fixtures_workers"]


@pytest.fixture
def results(
    redis_client: redis.Redis, redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Results]:
    monkeypatch.setenv("QUOTEGUARD_REDIS_URL", redis_url)
    monkeypatch.setenv("QUOTEGUARD_NAMESPACE", namespace)
    worker_settings.cache_clear()
    logging_config = structlog.get_config()  # the commands configure logging: put it back
    yield Results(redis_client, namespace)
    structlog.configure(**logging_config)
    worker_settings.cache_clear()


def run(*args: str) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, list(args))
    return done.exit_code, done.stdout, done.stderr


class TestResults:
    def test_prints_decisions_as_json_lines(self, results: Results) -> None:
        """`results` prints each Decision with its stream id, hostile text escaped."""
        for n in range(3):
            results.publish(make_decision(f"i{n}", outcome="no_violation"), make_item())
        code, out, _ = run("results")
        assert code == 0
        lines = [json.loads(line) for line in out.splitlines()]
        assert [line["decision"]["item_id"] for line in lines] == ["i0", "i1", "i2"]
        assert all(line["stream_id"] for line in lines)


class TestReview:
    def test_list_claim_release_resolve_export(self, results: Results) -> None:
        """The review commands go through a claim's whole life."""
        results.publish(make_decision("a", priority=10), make_item("a"))
        results.publish(make_decision("b", priority=90), make_item("b", "evil \u202e txet"))
        code, out, err = run("review", "list")
        assert code == 0
        assert "queued=2 claimed=0" in err
        assert [json.loads(line)["priority"] for line in out.splitlines()] == [90, 10]

        code, out, _ = run("review", "claim", "--reviewer", "ops")
        assert out.isascii()  # hostile content cannot reach the terminal raw
        claim = json.loads(out)
        key, token = claim["entry"]["key"], claim["token"]
        assert claim["entry"]["item"]["id"] == "b"
        assert run("review", "release", key, "--token", token)[0] == 0

        claim = json.loads(run("review", "claim", "--reviewer", "ops", "--key", key)[1])
        args = ["review", "resolve", key, "--token", claim["token"], "--violation"]
        code, _, err = run(*args)
        assert code == 1
        assert "rule id" in err
        code, out, _ = run(*args, "--rule", "HARASSMENT.1", "--note", "insult")
        assert code == 0
        assert json.loads(out)["rule_ids"] == ["HARASSMENT.1"]
        code, _, err = run(*args, "--rule", "HARASSMENT.1")
        assert code == 1
        assert "already_resolved" in err

        exported = [json.loads(line) for line in run("review", "export")[1].splitlines()]
        assert [(e["key"], e["resolution"]["reviewer"]) for e in exported] == [(key, "ops")]

    def test_claim_from_empty_queue(self, results: Results) -> None:
        """Nothing to claim is an exit code, not a traceback."""
        assert results.length() == 0
        code, _, err = run("review", "claim", "--reviewer", "ops")
        assert code == 1
        assert "nothing to claim" in err


@pytest.mark.usefixtures("results")
class TestQueue:
    def test_status_and_set_aside_messages(self, redis_url: str, namespace: str) -> None:
        """`queue` says where messages are; --undeliverable shows set-aside ones escaped,
        invalid UTF-8 included (that is why they were set aside)."""
        broker = redis.Redis.from_url(redis_url)  # bytes, as kombu's keys are
        broker.rpush(namespace, b"a", b"b")
        broker.delete(UNDECODABLE)  # shared by the test database, not namespaced
        broker.rpush(UNDECODABLE, "garbage \u202e".encode() + b"x" * 2000, b"\xff\xfe{")
        try:
            code, out, _ = run("queue", "--undeliverable")
        finally:
            broker.delete(UNDECODABLE)
            broker.close()
        assert code == 0
        status, *aside = [json.loads(line) for line in out.splitlines()]
        assert status["queue"] == namespace
        assert status["waiting"] == 2
        assert status["undeliverable"] == 2
        assert aside[0] == {"bytes": 2011, "head": ("garbage \u202e" + "x" * 2000)[:500]}
        assert aside[1] == {"bytes": 3, "head": "\\xff\\xfe{"}
        assert "\u202e" not in out  # the bidi override is escaped, not printed
