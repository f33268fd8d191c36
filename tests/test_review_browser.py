"""The review web app in real headless Chromium (Debian's package, driven by Playwright).

What only a browser shows: highlights at the right characters, keyboard shortcuts, the lease
kept alive by the open page, and hostile content that runs nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import structlog
from playwright.sync_api import Browser, Page, sync_playwright
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.golden import load_golden
from pipeline.models import ContentItem, Decision
from pipeline.policies import PolicySet, load_policies
from pipeline.sim.golden import generate_from_policies
from tests.fixtures_review_web import PASSWORD, LiveServer, hostile_item, make_flagged
from tests.test_pipeline_e2e import moderator
from workers.results import Results
from workers.review_queue import ReviewQueue
from workers.review_web.config import ReviewWebSettings
from workers.review_web.users import UserStore
from workers.settings import worker_settings

pytest_plugins = ["tests.fixtures_workers", "tests.fixtures_review_web"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TEXT = "You are a worthless idiot and everyone knows it."

#: Every quote's highlighted characters (joined across the <mark>s that carry its id), the
#: content's text as the browser holds it, and every element inside the content.
READ_CONTENT = """() => {
  const content = document.getElementById("content");
  const quotes = {}, strength = {};
  for (const mark of content.querySelectorAll("mark")) {
    for (const id of mark.dataset.quotes.split(" ")) {
      quotes[id] = (quotes[id] || "") + mark.textContent;
      strength[id] = (strength[id] || new Set()).add(mark.className);
    }
  }
  for (const id in strength) strength[id] = [...strength[id]].sort();
  const elements = [...content.querySelectorAll("*")].map(e => e.tagName.toLowerCase());
  return {text: content.textContent, quotes, strength, elements: [...new Set(elements)].sort()};
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (as .ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass(frozen=True)
class UI:
    """The app served on a loopback port, its queue, and a browser to sign in with."""

    browser: Browser
    server: LiveServer
    queue: ReviewQueue

    @property
    def url(self) -> str:
        return self.server.url

    def signed_in(self, name: str) -> Page:
        context = self.browser.new_context(viewport={"width": 1280, "height": 1100})
        page = context.new_page()
        page.goto(self.url + "/signin")
        page.fill('input[name="name"]', name)
        page.fill('input[name="password"]', PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_url(self.url + "/")
        return page


@pytest.fixture
def ui(browser: Browser, live_server: LiveServer, web_queue: ReviewQueue) -> UI:
    return UI(browser, live_server, web_queue)


def expected_quotes(decision: Decision, item: ContentItem) -> dict[str, str]:
    return {
        f"{i}.{j}": item.text[q.match.start : q.match.end]
        for i, f in enumerate(decision.findings)
        for j, q in enumerate(f.quotes)
        if q.match is not None
    }


def put(queue: ReviewQueue, item_id: str, priority: int = 50) -> tuple[Decision, ContentItem]:
    decision, item = make_flagged(
        item_id, TEXT, [("HARASSMENT.1", ["worthless idiot", "everyone knows"])], priority=priority
    )
    assert queue.enqueue(decision, item)
    return decision, item


class Canary:
    """A server that content points at: any request it gets means content acted as markup."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


class TestReviewing:
    def test_highlight_decide_by_keyboard(self, ui: UI) -> None:
        """Sign in, take an item with n, see its quotes highlighted at their characters, reject
        with r and submit-and-next with n: the resolution is on the labels stream, the next
        item is open and the first left the queue."""
        first, item = put(ui.queue, "first", 90)
        put(ui.queue, "second", 10)
        page = ui.signed_in("rita")
        page.keyboard.press("n")
        page.wait_for_url(ui.url + "/item")
        shown = page.evaluate(READ_CONTENT)
        assert shown["text"] == item.text
        assert shown["quotes"] == expected_quotes(first, item)
        assert shown["quotes"]["0.0"] == "worthless idiot"
        page.keyboard.press("r")
        assert page.is_checked('input[value="reject"]')
        page.keyboard.press("n")
        page.wait_for_selector("text=second")
        [label] = list(ui.queue.labelled())
        assert (label.key, label.resolution.violation) == (first.key, False)
        assert label.resolution.reviewer == "rita"
        entry = ui.queue.get(first.key)
        assert entry is not None
        assert entry.state == "resolved"
        assert ui.queue.size().queued == 0
        assert ui.queue.size().claimed == 1

    def test_shortcuts_ignored_while_typing_or_with_modifiers(self, ui: UI) -> None:
        """Keys typed into the note, or pressed with Alt or Ctrl held, choose and submit nothing."""
        put(ui.queue, "a")
        page = ui.signed_in("rita")
        page.keyboard.press("n")
        page.wait_for_url(ui.url + "/item")
        page.click("#note")
        page.keyboard.type("crn sure")
        assert page.input_value("#note") == "crn sure"
        page.keyboard.press("Escape")
        page.keyboard.press("Alt+r")
        page.keyboard.press("Control+e")
        assert (
            page.evaluate(
                "() => [...document.querySelectorAll('input[name=action]')].some(r => r.checked)"
            )
            is False
        )
        page.keyboard.press("e")
        page.keyboard.press("s")
        page.wait_for_url(ui.url + "/")
        [escalation] = ui.queue.escalations()
        assert escalation.note == "crn sure"

    def test_obscured_until_revealed(self, ui: UI, users: UserStore) -> None:
        """A reviewer who asked for it sees content blurred until pressing v."""
        put(ui.queue, "a")
        users.set_blur("rita", True)
        page = ui.signed_in("rita")
        page.keyboard.press("n")
        page.wait_for_url(ui.url + "/item")
        blur = "() => getComputedStyle(document.getElementById('content')).filter"
        assert page.evaluate(blur).startswith("blur(")
        page.keyboard.press("v")
        assert page.evaluate(blur) == "none"

    def test_two_browsers_never_hold_the_same_item(self, ui: UI) -> None:
        """Two reviewers in two browser contexts taking at once get different items."""
        put(ui.queue, "a")
        put(ui.queue, "b")
        pages = [ui.signed_in(name) for name in ("rita", "ravi")]
        for page in pages:
            page.keyboard.press("n")
        held = set()
        for page in pages:
            page.wait_for_url(ui.url + "/item")
            held.add(page.inner_text("h1 code"))
        assert held == {"a", "b"}


class TestLease:
    @pytest.fixture
    def web_settings(self) -> ReviewWebSettings:
        return ReviewWebSettings(lease_s=2, dual_review_share=0.0)

    def test_open_page_keeps_its_claim(self, ui: UI) -> None:
        """The open item page renews its 2 s lease: after 3 s nobody else can take the item
        and the decision is recorded."""
        put(ui.queue, "a")
        page = ui.signed_in("rita")
        page.keyboard.press("n")
        page.wait_for_url(ui.url + "/item")
        page.wait_for_timeout(3000)
        assert ui.queue.claim("ravi") is None
        page.keyboard.press("r")
        with page.expect_navigation():
            page.keyboard.press("s")
        assert [x.resolution.reviewer for x in ui.queue.labelled()] == ["rita"]

    def test_lost_claim_is_shown(self, ui: UI) -> None:
        """When the claim is lost anyway (here: given back behind the page's back), the page
        says so at its next heartbeat."""
        put(ui.queue, "a")
        page = ui.signed_in("rita")
        page.keyboard.press("n")
        page.wait_for_url(ui.url + "/item")
        [entry] = ui.queue.claimed()
        ui.queue.redis.hset(ui.queue.entry_key(entry.key), "lease_token", "stolen")
        page.wait_for_selector("#lease-lost", state="visible", timeout=5000)


class TestHostileContent:
    def test_xss_corpus_runs_nothing(
        self, ui: UI, canary: Canary, policies: PolicySet, tmp_path: Path
    ) -> None:
        """Arabic, Mandarin and an XSS corpus show as text with highlights at the right
        characters: no dialog, no script effect, no element from content, no request out."""
        decision, item = hostile_item(canary.url, policies)
        ui.queue.enqueue(decision, item)
        page = ui.signed_in("rita")
        dialogs: list[str] = []
        requests: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []  # a CSP refusal is logged here: the page must need none
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.keyboard.press("n")
        page.wait_for_url(ui.url + "/item")
        page.wait_for_load_state("networkidle")
        shown = page.evaluate(READ_CONTENT)
        assert shown["text"] == item.text
        assert shown["quotes"] == expected_quotes(decision, item)
        assert shown["strength"]["2.0"] == ["q-weak"]  # the fuzzy quote across the override
        assert shown["strength"]["0.0"] == ["q-strong"]
        assert shown["elements"] == ["mark", "span"]  # highlights and badges, nothing else
        assert page.evaluate("() => window.__xss") is None
        assert dialogs == []
        assert errors == []
        assert canary.hits == []
        assert all(url.startswith(ui.url) for url in requests), requests
        assert page.evaluate("() => document.title") == "Item · quoteguard"
        shot = tmp_path / "item.png"
        page.screenshot(path=str(shot), full_page=False)
        assert shot.stat().st_size > 10_000
        if target := _screenshot_target():
            shutil.copy(shot, target)


class TestCalibrationLoop:
    def test_reviewed_in_browser_exported_calibrated(
        self, ui: UI, redis_url: str, namespace: str, sim_server: str, tmp_path: Path
    ) -> None:
        """Decisions of the simulated model reviewed in the browser (some rejected), exported
        as a golden set, and a calibration profile fitted on it for that model version."""
        golden = list(generate_from_policies(load_policies(), 24, seed=5))
        results = Results(ui.queue.redis, namespace)
        with moderator(sim_server, "sim-calibrated") as mod:
            for g in golden:
                item = ContentItem(id=g.id, text=g.text)
                results.publish(mod.moderate(item), item)
        flagged = ui.queue.size().queued
        assert flagged >= 8
        page = ui.signed_in("rita")
        with page.expect_navigation():
            page.keyboard.press("n")
        for i in range(flagged):
            assert page.url == ui.url + "/item"
            # Every fourth the reviewer overrules the model: labels of both kinds to fit on.
            page.keyboard.press("r" if i % 4 == 0 else "c")
            with page.expect_navigation():
                page.keyboard.press("n")
        assert page.url == ui.url + "/"
        assert len(list(ui.queue.labelled())) == flagged

        export = tmp_path / "reviewed.jsonl"
        env = {"QUOTEGUARD_REDIS_URL": redis_url, "QUOTEGUARD_NAMESPACE": namespace}
        done = cli(
            "review", "export", "--golden", str(export), "--model", "sim-calibrated", env=env
        )
        assert done.exit_code == 0, done.output
        exported = load_golden(export)
        assert len(exported) == flagged
        rejected = sum(not x.label.violation for x in exported.items)
        assert rejected == (flagged + 3) // 4

        profiles = tmp_path / "profiles"
        done = cli(
            "calibrate", "--golden", str(export), "--model", "sim-calibrated",
            "--base-url", sim_server, "--profiles", str(profiles),
            "--cache-dir", str(tmp_path / "cache"), "--bootstrap", "20",
            env={"QUOTEGUARD_API_KEY": "sim-key", "QUOTEGUARD_LOG_LEVEL": "warning"},
        )  # fmt: skip
        assert done.exit_code == 0, done.output
        [path] = profiles.glob("*.json")
        profile = json.loads(path.read_text())
        assert profile["served_model"] == "sim-calibrated-2026-11-01"
        assert profile["golden_hash"] == hashlib.sha256(export.read_bytes()).hexdigest()
        assert profile["n_items"] >= flagged


def cli(*args: str, env: dict[str, str]) -> Any:
    """A `quoteguard` command in this process, with worker settings read afresh."""
    worker_settings.cache_clear()
    logging_config = structlog.get_config()  # the commands configure logging: put it back
    try:
        return CliRunner().invoke(app, list(args), env=env)
    finally:
        structlog.configure(**logging_config)
        worker_settings.cache_clear()


def _screenshot_target() -> Path | None:
    """QUOTEGUARD_REVIEW_SCREENSHOT=docs/img/review-item.png keeps the shot for the README."""
    import os  # noqa: PLC0415

    value = os.environ.get("QUOTEGUARD_REVIEW_SCREENSHOT")
    return Path(value) if value else None
