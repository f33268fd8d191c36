"""The review web app over HTTP (TestClient, real Redis): auth, CSRF, leases, decisions."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from pipeline.models import ContentItem, Decision
from pipeline.policies import PolicySet
from tests.fixtures_review_web import PASSWORD, csrf_of, make_flagged, sign_in
from workers.review_queue import ReviewQueue
from workers.review_web.config import ReviewWebSettings
from workers.review_web.routes import ROUTES
from workers.review_web.users import UserStore

pytest_plugins = ["tests.fixtures_workers", "tests.fixtures_review_web"]

Clients = Callable[[str | None], TestClient]
#: Every route of the app but sign-in, read from the app itself so a new one is covered.
GET_ROUTES = sorted({r.path for r in ROUTES if "GET" in (r.methods or ())} - {"/signin"})
POST_ROUTES = sorted({r.path for r in ROUTES if "POST" in (r.methods or ())} - {"/signin"})
TEXT = "You are a worthless idiot and everyone knows it."


def put(queue: ReviewQueue, item_id: str, priority: int = 50, text: str = TEXT) -> str:
    decision, item = make_flagged(
        item_id, text, [("HARASSMENT.1", ["worthless idiot"])], priority=priority
    )
    assert queue.enqueue(decision, item)
    return decision.key


def post(client: TestClient, path: str, **data: str) -> object:
    return client.post(path, data={"csrf": csrf_of(client, "/settings"), **data})


def decide(client: TestClient, action: str, **data: str) -> object:
    page = client.get("/item")
    assert page.status_code == 200, page.text
    key = page.text.split('name="key" value="', 1)[1].split('"', 1)[0]
    if action == "confirm":  # what the page ticks: every finding citing a real rule
        data.setdefault("confirm_rule", "HARASSMENT.1")
    return post(client, "/item/decide", key=_unescape(key), action=action, **data)


def _unescape(value: str) -> str:
    return (
        value.replace("&#34;", '"')
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )


class TestAuthentication:
    @pytest.mark.parametrize("path", GET_ROUTES)
    def test_pages_redirect_to_sign_in(self, client_for: Clients, path: str) -> None:
        """Every page but sign-in needs a session: without one it sends you to sign in."""
        response = client_for(None).get(path)
        assert response.status_code == 303
        assert response.headers["location"] == "/signin"

    @pytest.mark.parametrize("path", POST_ROUTES)
    def test_actions_refused_without_session(self, client_for: Clients, path: str) -> None:
        """A state change with a valid CSRF token but no sign-in is refused (401)."""
        client = client_for(None)
        assert client.post(path, data={"csrf": csrf_of(client)}).status_code == 401

    def test_wrong_password_refused(self, client_for: Clients) -> None:
        """A wrong password does not sign in and says so without naming which part was wrong."""
        client = client_for(None)
        response = sign_in(client, "rita", "not the password")
        assert response.status_code == 401
        assert "Wrong name or password" in response.text
        assert client.get("/").status_code == 303

    def test_unknown_user_refused_alike(self, client_for: Clients) -> None:
        """An unknown name gets the same answer as a wrong password."""
        response = sign_in(client_for(None), "nobody", PASSWORD)
        assert response.status_code == 401
        assert "Wrong name or password" in response.text

    def test_sign_in_then_queues(self, client_for: Clients) -> None:
        """A signed-in reviewer sees the queue page with their name."""
        page = client_for("rita").get("/")
        assert page.status_code == 200
        assert "rita (reviewer)" in page.text

    def test_repeated_failures_slow_down(self, client_for: Clients) -> None:
        """After three failed sign-ins even the right password is refused for a while."""
        client = client_for(None)
        for _ in range(3):
            assert sign_in(client, "rita", "guess guess guess").status_code == 401
        response = sign_in(client, "rita", PASSWORD)
        assert response.status_code == 429
        assert "Too many failed sign-ins" in response.text

    def test_session_cookie_flags(self, client_for: Clients) -> None:
        """The session cookie is HttpOnly, SameSite=Strict and Secure."""
        client = client_for(None)
        token = csrf_of(client)
        response = client.post(
            "/signin", data={"csrf": token, "name": "rita", "password": PASSWORD}
        )
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "secure" in cookie

    def test_sign_out_ends_session(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """After signing out the pages ask for sign-in again, and the held item is back."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        assert post(client, "/signout").status_code == 303
        assert client.get("/").status_code == 303
        assert web_queue.size().queued == 1

    def test_removed_account_signed_out(self, client_for: Clients, users: UserStore) -> None:
        """Deleting an account ends its sessions at the next request."""
        client = client_for("ravi")
        users.redis.delete(users.prefix + "ravi")
        assert client.get("/").headers["location"] == "/signin"


class TestAuthorization:
    def test_reviewer_cannot_reach_admin(self, client_for: Clients) -> None:
        """A reviewer gets 403 on the admin page."""
        assert client_for("rita").get("/admin").status_code == 403

    def test_admin_sees_admin(self, client_for: Clients) -> None:
        """An admin gets the admin page."""
        page = client_for("ada").get("/admin")
        assert page.status_code == 200
        assert "Audit trail" in page.text


class TestCsrf:
    def test_state_change_without_token_refused(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """Taking an item without the CSRF token is refused and takes nothing."""
        put(web_queue, "a")
        client = client_for("rita")
        assert client.post("/next").status_code == 403
        assert web_queue.size().queued == 1

    def test_wrong_token_refused(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """A token from another session is refused."""
        put(web_queue, "a")
        other = csrf_of(client_for("ravi"), "/")
        assert client_for("rita").post("/next", data={"csrf": other}).status_code == 403
        assert web_queue.size().queued == 1

    def test_sign_in_needs_token(self, client_for: Clients) -> None:
        """Sign-in itself needs the token (no login CSRF)."""
        client = client_for(None)
        client.get("/signin")
        response = client.post("/signin", data={"name": "rita", "password": PASSWORD})
        assert response.status_code == 403

    def test_header_token_accepted(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """The page's script sends the token as a header; that counts."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        token = csrf_of(client, "/item")
        assert client.post("/item/extend", headers={"X-CSRF-Token": token}).status_code == 200


class TestHeaders:
    def test_strict_csp_with_fresh_nonce(self, client_for: Clients) -> None:
        """Every response has a CSP allowing only nonce'd script; the nonce changes each time."""
        client = client_for("rita")
        first, second = client.get("/"), client.get("/")
        csp = first.headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'nonce-" in csp
        assert "unsafe-inline" not in csp
        assert csp != second.headers["content-security-policy"]
        nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
        assert f'<script src="/static/review.js" nonce="{nonce}"' in first.text

    def test_no_inline_script_or_handler(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Pages carry one script element, by src, and no inline event handlers."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        page = client.get("/item").text
        assert page.count("<script") == 1
        assert " onclick=" not in page
        assert " onload=" not in page


class TestQueues:
    def test_depth_by_priority_and_oldest(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """The queue page lists each priority with its depth, most urgent first."""
        put(web_queue, "a", 20)
        put(web_queue, "b", 80)
        put(web_queue, "c", 80)
        page = client_for("rita").get("/").text
        assert page.index("<td>80</td><td>2</td>") < page.index("<td>20</td><td>1</td>")
        assert '<span id="queued">3</span>' in page

    def test_take_next_is_most_urgent(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Taking the next item claims the highest priority one and shows it."""
        put(web_queue, "low", 10)
        put(web_queue, "high", 90)
        client = client_for("rita")
        assert post(client, "/next").headers["location"] == "/item"
        assert "<code>high</code>" in client.get("/item").text
        assert web_queue.size().claimed == 1

    def test_one_item_at_a_time(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Asking for the next item while holding one returns to the held item."""
        put(web_queue, "a")
        put(web_queue, "b")
        client = client_for("rita")
        post(client, "/next")
        post(client, "/next")
        assert web_queue.size().claimed == 1

    def test_two_reviewers_never_same_item(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """Two reviewers taking at once get different items; a third gets none."""
        put(web_queue, "a")
        put(web_queue, "b")
        rita, ravi, ada = client_for("rita"), client_for("ravi"), client_for("ada")
        for client in (rita, ravi):
            post(client, "/next")
        held = {c.get("/item").text.split("<code>", 1)[1].split("<", 1)[0] for c in (rita, ravi)}
        assert held == {"a", "b"}
        assert post(ada, "/next").headers["location"] == "/"
        assert "Nothing to review" in ada.get("/").text

    def test_give_back(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Giving an item back returns it to the queue unresolved."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        post(client, "/item/release")
        assert web_queue.size().queued == 1


class TestLeases:
    @pytest.fixture
    def web_settings(self) -> ReviewWebSettings:
        return ReviewWebSettings(lease_s=2, dual_review_share=0.0)

    def test_abandoned_claim_returns(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """A claim nobody keeps alive runs out: another reviewer gets the item, the first's
        decision is refused."""
        put(web_queue, "a")
        rita, ravi = client_for("rita"), client_for("ravi")
        post(rita, "/next")
        page = rita.get("/item").text
        time.sleep(2.3)
        post(ravi, "/next")
        assert "<code>a</code>" in ravi.get("/item").text
        key = _unescape(page.split('name="key" value="', 1)[1].split('"', 1)[0])
        response = post(rita, "/item/decide", key=key, action="reject")
        assert response.headers["location"] == "/"
        assert "Not recorded: lease lost" in rita.get("/").text
        assert list(web_queue.labelled()) == []

    def test_heartbeat_keeps_claim(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Extending (as the open page does) keeps the item past its first lease."""
        put(web_queue, "a")
        rita, ravi = client_for("rita"), client_for("ravi")
        post(rita, "/next")
        token = csrf_of(rita, "/item")
        for _ in range(3):
            time.sleep(0.9)
            assert rita.post("/item/extend", headers={"X-CSRF-Token": token}).status_code == 200
        assert post(ravi, "/next").headers["location"] == "/"
        assert decide(rita, "reject").headers["location"] == "/"
        assert len(list(web_queue.labelled())) == 1

    def test_extend_after_expiry_conflicts(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """A heartbeat after the lease ran out answers 409, which the page shows."""
        put(web_queue, "a")
        rita = client_for("rita")
        post(rita, "/next")
        token = csrf_of(rita, "/item")
        time.sleep(2.3)
        response = rita.post("/item/extend", headers={"X-CSRF-Token": token})
        assert response.status_code == 409
        assert "lease lost" in response.json()["error"]


class TestDecide:
    def test_confirm_records_label(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Confirm labels the item with the finding's rule, once, on the labels stream."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        assert decide(client, "confirm", note="clear insult").headers["location"] == "/"
        [label] = list(web_queue.labelled())
        assert label.resolution.violation
        assert label.resolution.rule_ids == ["HARASSMENT.1"]
        assert label.resolution.reviewer == "rita"
        assert label.resolution.note == "clear insult"
        assert web_queue.size().queued == web_queue.size().claimed == 0

    def test_confirm_one_finding_of_two(
        self, client_for: Clients, web_queue: ReviewQueue, policies: PolicySet
    ) -> None:
        """Confirming with one finding ticked labels the item with that finding's rule only."""
        decision, item = make_flagged(
            "a", TEXT, [("HARASSMENT.1", ["worthless idiot"]), ("HATE.1", ["everyone"])],
            policies=policies,
        )  # fmt: skip
        web_queue.enqueue(decision, item)
        client = client_for("rita")
        post(client, "/next")
        page = client.get("/item").text
        assert 'name="confirm_rule" value="HARASSMENT.1" checked' in page
        assert 'name="confirm_rule" value="HATE.1" checked' in page
        decide(client, "confirm", confirm_rule="HATE.1")
        [label] = list(web_queue.labelled())
        assert label.resolution.rule_ids == ["HATE.1"]

    def test_confirm_nothing_ticked_refused(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """Confirm with no finding ticked records nothing and says why."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        assert decide(client, "confirm", confirm_rule="").headers["location"] == "/item"
        assert "Nothing confirmed" in client.get("/item").text
        assert list(web_queue.labelled()) == []

    def test_reject(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Reject labels the item as no violation."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        decide(client, "reject")
        [label] = list(web_queue.labelled())
        assert not label.resolution.violation

    def test_change_rule(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Changing the rule labels the item with the rule chosen."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        decide(client, "rule", rule_id="HATE.1")
        [label] = list(web_queue.labelled())
        assert label.resolution.rule_ids == ["HATE.1"]

    def test_change_to_unknown_rule_refused(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """A rule that is not in the policy set is refused; the reviewer keeps the item."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        assert decide(client, "rule", rule_id="MADE.UP").headers["location"] == "/item"
        assert "Choose a rule" in client.get("/item").text
        assert list(web_queue.labelled()) == []

    def test_submit_and_next(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """ "Submit and next" records the decision and opens the next item."""
        put(web_queue, "a", 90)
        put(web_queue, "b", 10)
        client = client_for("rita")
        post(client, "/next")
        assert decide(client, "reject", next="1").headers["location"] == "/item"
        assert "<code>b</code>" in client.get("/item").text

    def test_escalate(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Escalating puts the item back at the top, marked with who escalated it and why."""
        put(web_queue, "urgent", 90)
        key = put(web_queue, "a", 10)
        rita, ravi = client_for("rita"), client_for("ravi")
        post(rita, "/next")
        decide(rita, "reject", next="1")
        decide(rita, "escalate", note="needs legal")
        entry = web_queue.get(key)
        assert entry is not None
        assert entry.state == "queued"
        assert entry.priority == 100
        assert entry.escalated_by == "rita"
        post(ravi, "/next")
        assert "Escalated by rita: needs legal" in ravi.get("/item").text
        [escalation] = web_queue.escalations()
        assert (escalation.reviewer, escalation.note) == ("rita", "needs legal")

    def test_blur_setting(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """A reviewer who chose to obscure content gets the item page obscured."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/settings", blur="1")
        post(client, "/next")
        assert 'class="obscured"' in client.get("/item").text
        post(client, "/settings")
        assert 'class="obscured"' not in client.get("/item").text


class TestBadInput:
    def test_unknown_action_refused(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """A decision with no known action records nothing and names the choices."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        assert decide(client, "delete-everything").headers["location"] == "/item"
        assert "Choose an action: confirm, reject, rule, escalate" in client.get("/item").text
        assert list(web_queue.labelled()) == []

    def test_stale_page_refused(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """A form for an item the reviewer no longer holds records nothing."""
        put(web_queue, "a")
        client = client_for("rita")
        post(client, "/next")
        assert post(client, "/item/decide", key="another", action="reject").status_code == 303
        assert "no longer hold" in client.get("/").text
        assert list(web_queue.labelled()) == []

    def test_oversized_body_refused(self, client_for: Clients) -> None:
        """A request body past the form limit is refused before it is read whole."""
        client = client_for("rita")
        token = csrf_of(client, "/")
        response = client.post("/settings", data={"csrf": token, "note": "x" * 70_000})
        assert response.status_code == 413

    def test_error_decision_shown(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """An item the pipeline failed on shows why, in words, with the error."""
        decision = Decision.model_validate(
            {
                "item_id": "e",
                "outcome": "error",
                "review_priority": 90,
                "reasons": ["pipeline_error"],
                "model": "m",
                "policy_version": "pv1",
                "errors": [{"kind": "transient", "message": "<b>503</b> upstream", "stage": "llm"}],
            }
        )
        web_queue.enqueue(decision, ContentItem(id="e", text="text"))
        client = client_for("rita")
        post(client, "/next")
        page = client.get("/item").text
        assert "The pipeline failed on this item" in page
        assert "llm: transient: &lt;b&gt;503&lt;/b&gt; upstream" in page
        assert "The model reported no finding." in page


class TestDualReview:
    @pytest.fixture
    def web_settings(self) -> ReviewWebSettings:
        return ReviewWebSettings(lease_s=60, dual_review_share=1.0)

    def test_second_review_by_someone_else(
        self, client_for: Clients, web_queue: ReviewQueue
    ) -> None:
        """A dual-reviewed item comes back for a second reviewer, never for the first."""
        put(web_queue, "a")
        rita, ravi = client_for("rita"), client_for("ravi")
        post(rita, "/next")
        decide(rita, "confirm")
        assert post(rita, "/next").headers["location"] == "/"
        post(ravi, "/next")
        assert "independent second review" in ravi.get("/item").text
        decide(ravi, "confirm")
        assert [x.resolution.reviewer for x in web_queue.labelled()] == ["rita", "ravi"]

    def test_admin_sees_kappa(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """The admin page shows reviewer agreement and the model's, per model version."""
        rita, ravi = client_for("rita"), client_for("ravi")
        for i, (first, second) in enumerate(
            [("confirm", "confirm"), ("reject", "reject"), ("confirm", "reject")]
        ):
            put(web_queue, f"i{i}")
            post(rita, "/next")
            decide(rita, first)
            post(ravi, "/next")
            decide(ravi, second)
        page = client_for("ada").get("/admin").text
        row = page.split('<table id="agreement">', 1)[1].split("</table>", 1)[0]
        # Reviewers: 2 of 3 agree, chance 4/9: kappa = (6/9 - 4/9) / (5/9) = 0.4.
        assert (
            "<td>sim-model</td><td>sim-model-2026-01</td><td>3</td><td>66.7%</td><td>0.40</td>"
            in row
        )
        # The model flagged all three; rita (first review) confirmed two.
        assert "<td>3</td><td>66.7%</td><td>0.00</td>" in row


class TestAdmin:
    def test_audit_trail(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """The audit trail names the reviewer, the decision, the model and policy versions."""
        put(web_queue, "a")
        rita = client_for("rita")
        post(rita, "/next")
        decide(rita, "confirm", note="seen <i>")
        table = client_for("ada").get("/admin").text.split('<table id="audit">', 1)[1]
        row = table.split("</tr>", 2)[1]
        for text in ("rita", "HARASSMENT.1", "sim-model / sim-model-2026-01", "pv1", "&lt;i&gt;"):
            assert text in row

    def test_throughput(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Throughput counts each reviewer's resolutions."""
        rita = client_for("rita")
        for i in range(2):
            put(web_queue, f"i{i}")
            post(rita, "/next")
            decide(rita, "reject")
        table = client_for("ada").get("/admin").text.split('<table id="throughput">', 1)[1]
        assert "<td>rita</td><td>2</td><td>2</td><td>2</td>" in table


class TestItemPage:
    def test_content_escaped(self, client_for: Clients, web_queue: ReviewQueue) -> None:
        """Markup in content arrives as text: escaped, with the quote highlighted inside it."""
        text = (
            "Hi <script>alert(1)</script> you worthless idiot </textarea>"
            "<img src=x onerror=alert(2)>"
        )
        put(web_queue, "x", text=text)
        client = client_for("rita")
        post(client, "/next")
        page = client.get("/item").text
        assert "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<img src=x" not in page
        assert '<mark class="q-strong"' in page
        assert ">worthless idiot</mark>" in page

    def test_weak_and_flagged(
        self, client_for: Clients, web_queue: ReviewQueue, policies: PolicySet
    ) -> None:
        """A fuzzy quote is marked weaker, an absent quote and a made-up rule are flagged."""
        text = "Everyone says you are a worthless idiot, honestly."
        decision, item = make_flagged(
            "x",
            text,
            [("HARASSMENT.1", ["you are a worthles idiot", "not there at all"]), ("FOO.9", [])],
            policies=policies,
            reasons=["hallucinated_rule:FOO.9", "no_calibration_profile"],
        )
        web_queue.enqueue(decision, item)
        client = client_for("rita")
        post(client, "/next")
        page = client.get("/item").text
        assert '<mark class="q-weak"' in page
        assert "not in the content" in page
        assert "Rule FOO.9 does not exist" in page
        assert "The model cited FOO.9, a rule that does not exist." in page
        assert "no profile for this model version" in page
        rule = policies.rule("HARASSMENT.1")
        assert rule is not None
        assert rule.title in page
