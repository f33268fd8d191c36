"""A provider whose error bodies echo the API key and carry terminal control sequences.

Real providers echo what they were sent in their error bodies, and instructor, openai and
httpx log those bodies through plain stdlib logging. A stand-in provider (a small HTTP
server of this test's own) answers every call with such a body: neither the key nor any raw
control or bidi character may reach the captured stderr of the CLI or of a worker, nor the
Decisions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fixtures_workers import Fleet
from tests.hostile import TERMINAL_ATTACK
from tests.test_cli_moderate import quoteguard

pytest_plugins = ["tests.fixtures_workers"]

#: Of no known shape (not sk-, no "Bearer" once echoed): only the configured key finds it.
KEY = "qg-live-7Hc2Lx9QpRt4Zz"
RAW_CONTROLS = ("\x1b", "\x07", "\u202e")


class EchoingProvider:
    """Answers each chat call 401 (JSON echoing the key) or 500 (raw text echoing it)."""

    def __init__(self) -> None:
        self.calls = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                provider.calls += 1
                auth = self.headers.get("Authorization", "")
                key = auth.removeprefix("Bearer ")
                if provider.calls % 2:
                    status, kind = 401, "application/json"
                    body = json.dumps(
                        {
                            "error": {
                                "message": f"Incorrect API key provided: {key}. "
                                f"{TERMINAL_ATTACK} You sent Authorization: {auth}",
                                "type": "invalid_request_error",
                                "code": "invalid_api_key",
                            }
                        }
                    ).encode()
                else:
                    status, kind = 500, "text/plain"
                    body = f"upstream said {TERMINAL_ATTACK} to api_key={key}".encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("x-echo", key)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider() -> Iterator[EchoingProvider]:
    server = EchoingProvider()
    yield server
    server.close()


def assert_clean(text: str) -> None:
    assert KEY not in text
    for raw in RAW_CONTROLS:
        assert raw not in text


@pytest.mark.parametrize("level", ["info", "debug"])
def test_cli_stderr_and_decisions_never_show_the_key(
    provider: EchoingProvider, tmp_path: Path, level: str
) -> None:
    """`quoteguard moderate` logs the provider's failures without the key or raw controls."""
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{n}", "text": "hi"}) + "\n" for n in range(3)))
    out = tmp_path / "decisions.jsonl"
    done = quoteguard(
        "moderate",
        str(items),
        "--out",
        str(out),
        "--base-url",
        provider.base_url,
        env={
            "OPENAI_API_KEY": KEY,
            "QUOTEGUARD_LOG_LEVEL": level,
            "QUOTEGUARD_MAX_TRANSPORT_RETRIES": "1",
        },
    )
    assert done.returncode == 0, done.stderr
    assert provider.calls >= 3
    assert "Incorrect API key provided: [redacted]" in done.stderr  # the failure is still told
    assert_clean(done.stderr + done.stdout)
    decisions = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["outcome"] for d in decisions] == ["error"] * 3
    assert KEY not in out.read_text()


@pytest.mark.service
@pytest.mark.timeout(120)
def test_worker_log_never_shows_the_key(
    provider: EchoingProvider, make_fleet: Callable[..., Fleet]
) -> None:
    """A worker, Celery's and the SDKs' lines included, logs neither the key nor controls."""
    fleet = make_fleet(
        QUOTEGUARD_BASE_URL=provider.base_url,
        QUOTEGUARD_API_KEY=KEY,
        QUOTEGUARD_LOG_LEVEL="debug",
        QUOTEGUARD_MAX_RETRIES="1",
    )
    fleet.start_worker(concurrency=2)
    fleet.send([{"id": f"w{n}\x1b[2J", "text": "hi"} for n in range(3)])
    fleet.wait_for(3, timeout=60)
    logs = "".join(
        p.read_bytes().decode("utf-8", "replace") for p in fleet.processes.logs.glob("*.log")
    )
    assert "Incorrect API key provided: [redacted]" in logs
    assert_clean(logs)
    assert all(d.outcome == "error" for d in fleet.decisions())
    assert all(KEY not in d.model_dump_json() for d in fleet.decisions())
