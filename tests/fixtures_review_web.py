"""Fixtures for the review web app: the app on a private namespace, accounts, signed-in clients.

Registered with `pytest_plugins = ["tests.fixtures_workers", "tests.fixtures_review_web"]`.
`make_flagged` builds a Decision whose quotes are located in the content by the real
grounding code, so highlights in tests sit where the pipeline would put them. Test modules
import the helpers too, so this module is not assertion-rewritten: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import csv
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.testclient import TestClient

from pipeline.grounding import locate
from pipeline.models import CitationCheck, ContentItem, Decision, FindingReport, QuoteVerdict
from pipeline.policies import PolicySet, load_policies
from workers.review_queue import ReviewQueue
from workers.review_web.app import create_app
from workers.review_web.config import ReviewWebSettings
from workers.review_web.users import UserStore

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
CSRF_INPUT = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def policies() -> PolicySet:
    return load_policies()


@pytest.fixture
def web_settings() -> ReviewWebSettings:
    return ReviewWebSettings(lease_s=60, dual_review_share=0.0)


@pytest.fixture
def web_queue(
    redis_client: redis.Redis, namespace: str, web_settings: ReviewWebSettings
) -> ReviewQueue:
    return ReviewQueue(redis_client, namespace, lease_s=web_settings.lease_s)


@pytest.fixture
def users(redis_client: redis.Redis, namespace: str) -> UserStore:
    # argon2 at its cheapest: the default costs ~0.2 s a hash, and every test signs in.
    store = UserStore(redis_client, namespace, PasswordHasher(time_cost=1, memory_cost=64))
    for name, role in (("rita", "reviewer"), ("ravi", "reviewer"), ("ada", "admin")):
        store.add(name, PASSWORD, role)  # type: ignore[arg-type]
    return store


@pytest.fixture
def web_app(
    web_queue: ReviewQueue, users: UserStore, policies: PolicySet, web_settings: ReviewWebSettings
) -> Starlette:
    return create_app(web_queue, users, policies, web_settings, secret="test-secret-" + "x" * 32)


@pytest.fixture
def client_for(web_app: Starlette) -> Iterator[Callable[[str | None], TestClient]]:
    """`client_for("rita")`: an HTTPS test client signed in as rita (None: signed out)."""
    clients: list[TestClient] = []

    def make(name: str | None) -> TestClient:
        client = TestClient(web_app, base_url="https://testserver", follow_redirects=False)
        clients.append(client)
        if name is not None:
            response = sign_in(client, name, PASSWORD)
            assert response.status_code == 303, response.text
        return client

    yield make
    for client in clients:
        client.close()


def csrf_of(client: TestClient, path: str = "/signin") -> str:
    match = CSRF_INPUT.search(client.get(path).text)
    assert match is not None, f"no CSRF token on {path}"
    return match.group(1)


def sign_in(client: TestClient, name: str, password: str) -> Any:
    token = csrf_of(client)
    return client.post("/signin", data={"csrf": token, "name": name, "password": password})


def make_flagged(
    item_id: str,
    text: str,
    findings: list[tuple[str, list[str]]],
    *,
    priority: int = 50,
    model: str = "sim-model",
    served_model: str | None = "sim-model-2026-01",
    policy_version: str = "pv1",
    reasons: list[str] | None = None,
    policies: PolicySet | None = None,
) -> tuple[Decision, ContentItem]:
    """A human_review Decision whose findings cite `rule_id` with quotes located in `text`."""
    reports = [
        FindingReport(
            rule_id=rule_id,
            verdict=True,
            explanation=f"the model's explanation for {rule_id}",
            quotes=[QuoteVerdict(quote=q, match=locate(q, text)) for q in quotes],
            citation=CitationCheck(rule_id=rule_id, exists=policies is None or rule_id in policies),
            p_true=0.93,
        )
        for rule_id, quotes in findings
    ]
    decision = Decision(
        item_id=item_id,
        outcome="human_review",
        review_priority=priority,
        reasons=reasons or ["no_calibration_profile"],
        findings=reports,
        model=model,
        served_model=served_model,
        policy_version=policy_version,
    )
    return decision, ContentItem(id=item_id, text=text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """The app under uvicorn in a thread, on a free loopback port (for the browser tests)."""

    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                msg = "review app did not start"
                raise RuntimeError(msg)
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def live_server(web_app: Starlette) -> Iterator[LiveServer]:
    with LiveServer(web_app) as server:
        yield server


# ----------------------------------------------------------------------------- hostile content

DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def hatecheck_cases(language: str, n: int) -> list[str]:
    """The first `n` hateful test cases of Multilingual HateCheck for a language."""
    with (DATA / "multilingual_hatecheck" / f"{language}.csv").open(encoding="utf-8") as f:
        rows = [r["test_case"] for r in csv.DictReader(f) if r["label_gold"] == "hateful"]
    return rows[:n]


def xss_corpus(canary: str) -> list[str]:
    """Markup and script that must show as text; any request to `canary` means it acted."""
    return [
        "<script>window.__xss = 1; alert('script')</script>",
        f'<script src="{canary}/script.js"></script>',
        f"<img src={canary}/img.png onerror=\"window.__xss=2;alert('img')\">",
        "<svg onload=alert('svg')><circle r=1 /></svg>",
        "<a href=\"javascript:alert('href')\">click me</a> javascript:alert(1)",
        f'<iframe src="{canary}/frame"></iframe>',
        f'<link rel=stylesheet href="{canary}/style.css">',
        f"<style>@import url({canary}/i.css)</style>",
        f'<meta http-equiv="refresh" content="0;url={canary}/refresh">',
        f'<base href="{canary}/">',
        "</textarea><textarea>broken <b unclosed <i>tags</div></mark>",
        "<mark class=q-strong>fake highlight</mark> &lt;already escaped&gt; &amp;",
        "{{ 7*7 }} ${alert(1)} {% raw %}",
        '"><script>alert("attr")</script><div title="',
        "RTL override: \u202eevil.exe\u202c and isolate \u2067txt\u2069 and embed \u202btext\u202c",
        "zero\u200bwidth\u200djoiner\ufeffbom and soft\u00adhyphen",
        "x" * 3000,
    ]


def hostile_item(canary: str, policies: PolicySet) -> tuple[Decision, ContentItem]:
    """Arabic, Mandarin and an XSS corpus in one item, with quotes grounded in each part."""
    arabic = hatecheck_cases("arabic", 3)
    mandarin = hatecheck_cases("mandarin", 3)
    text = "\n".join([*arabic, *mandarin, *xss_corpus(canary)])
    return make_flagged(
        "hostile-<b>1</b>\u202e",
        text,
        [
            ("HATE.1", [arabic[0], mandarin[1]]),
            ("HARASSMENT.1", ["<script>window.__xss = 1; alert('script')</script>"]),
            # fuzzy (a copying slip), across a bidi override: weaker, at the right characters
            ("HARASSMENT.2", ["RTL overide: \u202eevil.exe\u202c and isolate"]),
            # normalised: the zero-width characters left out; verbatim-strength
            ("VIOLENCE.1", ["zerowidthjoinerbom and soft"]),
            ("MADE_UP.7", ["this quote is nowhere in the content"]),
        ],
        policies=policies,
        reasons=["hallucinated_rule:MADE_UP.7", "invalid_beside_valid", "no_calibration_profile"],
    )
