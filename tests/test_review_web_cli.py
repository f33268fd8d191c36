"""`quoteguard review add-user | serve | export --golden`: the reviewer app's commands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import structlog
from typer.testing import CliRunner

from pipeline.golden import load_golden
from tests.fixtures_review_web import free_port, make_flagged
from workers.cli import app
from workers.review_queue import ReviewQueue
from workers.review_web.config import ReviewWebSettings
from workers.review_web.users import UserStore
from workers.settings import worker_settings

pytest_plugins = ["tests.fixtures_workers"]


@pytest.fixture
def env(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    monkeypatch.setenv("QUOTEGUARD_REDIS_URL", redis_url)
    monkeypatch.setenv("QUOTEGUARD_NAMESPACE", namespace)
    worker_settings.cache_clear()
    logging_config = structlog.get_config()  # the commands configure logging: put it back
    yield {"QUOTEGUARD_REDIS_URL": redis_url, "QUOTEGUARD_NAMESPACE": namespace}
    structlog.configure(**logging_config)
    worker_settings.cache_clear()


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    done = CliRunner().invoke(app, list(args), input=stdin)
    return done.exit_code, done.stdout, done.stderr


@pytest.mark.usefixtures("env")
class TestAddUser:
    def test_from_stdin(self, redis_client: redis.Redis, namespace: str) -> None:
        """add-user reads the password from stdin and stores an account that signs in."""
        code, _, err = run(
            "review", "add-user", "ada", "--role", "admin", "--password-stdin",
            stdin="a long enough secret\n",
        )  # fmt: skip
        assert code == 0, err
        assert "added ada (admin)" in err
        user = UserStore(redis_client, namespace).verify("ada", "a long enough secret")
        assert user is not None
        assert user.is_admin

    def test_prompt_with_confirmation(self) -> None:
        """Without --password-stdin the password is asked for twice, hidden."""
        code, _, err = run("review", "add-user", "rita", stdin="a long enough secret\n" * 2)
        assert code == 0, err
        assert "added rita (reviewer)" in err

    @pytest.mark.parametrize(
        ("args", "problem"),
        [
            (["rita", "--role", "root"], "role 'root'"),
            (["bad name"], "user name"),
        ],
    )
    def test_refused(self, args: list[str], problem: str) -> None:
        """A bad role or name exits 2 and says what is wrong."""
        code, _, err = run(
            "review", "add-user", *args, "--password-stdin", stdin="a long enough secret\n"
        )
        assert code == 2
        assert problem in err


@pytest.mark.usefixtures("env")
class TestExportGolden:
    def test_writes_a_golden_set(
        self, redis_client: redis.Redis, namespace: str, tmp_path: Path
    ) -> None:
        """export --golden writes a set load_golden accepts, and names items it left out."""
        queue = ReviewQueue(redis_client, namespace)
        for item_id, second in (("a", False), ("b", True)):
            decision, item = make_flagged(item_id, "you worthless idiot", [("HARASSMENT.1", [])])
            queue.enqueue(decision, item)
            claim = queue.claim("r1")
            assert claim is not None
            queue.resolve(
                claim.entry.key, claim.token, violation=True, rule_ids=["HARASSMENT.1"],
                second_review=second,
            )  # fmt: skip
        claim = queue.claim("r2")
        assert claim is not None
        queue.resolve(claim.entry.key, claim.token, violation=False, rule_ids=[])
        out = tmp_path / "golden.jsonl"
        code, _, err = run("review", "export", "--golden", str(out))
        assert code == 0, err
        assert [i.id for i in load_golden(out).items] == ["a"]
        assert "left out b: reviewers disagree" in err


class TestServe:
    def test_serves_sign_in_on_loopback(self, env: dict[str, str]) -> None:
        """`review serve` answers on 127.0.0.1 with the sign-in page and its security headers."""
        port = free_port()
        with subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "review", "serve", "--port", str(port)],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        ) as proc:
            try:
                response = _first_answer(f"http://127.0.0.1:{port}/signin", proc)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        assert response.status_code == 200
        assert "script-src 'nonce-" in response.headers["content-security-policy"]
        assert "Sign in" in response.text


def _first_answer(url: str, proc: subprocess.Popen[bytes]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "review serve did not start"
            time.sleep(0.1)


def test_cli_does_not_load_the_web_stack() -> None:
    """Importing the CLI loads no web framework, template engine or password hasher."""
    code = (
        "import sys, workers.cli; "
        "print(json.dumps(sorted(m for m in ('starlette.applications', 'jinja2', 'uvicorn', "
        "'argon2', 'playwright') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == []


def test_readme_names_real_settings() -> None:
    """Every QUOTEGUARD_REVIEW_* setting the README names is one the app reads."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reviewing: the triage web app", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"QUOTEGUARD_REVIEW_([A-Z_]+)", section))
    named |= set(re.findall(r"`_([A-Z_]+)`", section))
    fields = {name.upper() for name in ReviewWebSettings.model_fields}
    assert named
    assert named <= fields, named - fields
