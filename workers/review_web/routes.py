"""The reviewer's pages and actions. Security (session, CSRF, roles) is in `security`.

A reviewer holds at most one item at a time, remembered in the session with its lease
token: `/item` always shows the held item, and "take next" returns to it while it is held.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from workers.review_queue import (
    AlreadyResolvedError,
    LeaseLostError,
    ReviewError,
    ReviewQueue,
    UnknownItemError,
)
from workers.review_web.agreement import agreement_by_version, throughput
from workers.review_web.state import AppState
from workers.review_web.users import User
from workers.review_web.views import confirmable_rules, item_view

ACTIONS = ("confirm", "reject", "rule", "escalate")
MAX_NOTE = 2000


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.review
    return state


def _user(request: Request) -> User:
    user: User = request.state.user
    return user


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    session = request.session
    context.update(
        request=request,
        csrf=session["csrf"],
        nonce=request.state.csp_nonce,
        user=getattr(request.state, "user", None),
        flash=session.pop("flash", None),
    )
    return _state(request).templates.TemplateResponse(
        request, template, context, status_code=status
    )


def _back(request: Request, to: str, flash: str | None = None) -> Response:
    if flash:
        request.session["flash"] = flash
    return RedirectResponse(to, 303)


# ----------------------------------------------------------------------------- sign-in


async def signin_page(request: Request) -> Response:
    return render(request, "signin.html")


async def signin(request: Request) -> Response:
    form = await request.form()
    name, password = str(form.get("name", "")), str(form.get("password", ""))
    users = _state(request).users
    wait = await run_in_threadpool(users.locked_for_s, name)
    if wait > 0:
        return render(
            request,
            "signin.html",
            status=429,
            error=f"Too many failed sign-ins: try again in {wait:.0f} s.",
        )
    user = await run_in_threadpool(users.verify, name, password)
    if user is None:
        return render(request, "signin.html", status=401, error="Wrong name or password.")
    request.session.clear()  # a fresh session (and CSRF token) after sign-in: no fixation
    request.session["user"] = user.name
    return RedirectResponse("/", 303)


async def signout(request: Request) -> Response:
    await _give_back(request)  # a held item goes back now, not when its lease runs out
    request.session.clear()
    return RedirectResponse("/signin", 303)


# ----------------------------------------------------------------------------- queues


async def queues(request: Request) -> Response:
    queue = _state(request).queue

    def read() -> dict[str, Any]:
        return {"bands": queue.bands(), "size": queue.size(), "now": queue.now()}

    return render(request, "queues.html", **await run_in_threadpool(read))


async def take_next(request: Request) -> Response:
    state = _state(request)
    if request.session.get("lease"):
        return RedirectResponse("/item", 303)
    claim = await run_in_threadpool(
        state.queue.claim, _user(request).name, lease_s=state.settings.lease_s
    )
    if claim is None:
        return _back(request, "/", "Nothing to review right now.")
    request.session["lease"] = {"key": claim.entry.key, "token": claim.token}
    return RedirectResponse("/item", 303)


# ----------------------------------------------------------------------------- item


async def item_page(request: Request) -> Response:
    state = _state(request)
    lease = request.session.get("lease")
    if not lease:
        return _back(request, "/")
    entry = await run_in_threadpool(state.queue.get, lease["key"])
    if entry is None or entry.state != "claimed" or entry.reviewer != _user(request).name:
        request.session.pop("lease", None)
        return _back(request, "/", "Your claim on that item ran out; it went back to the queue.")
    return render(
        request,
        "item.html",
        view=item_view(entry, state.policies),
        rules=state.policies.rules,
        heartbeat_ms=int(state.settings.heartbeat_s * 1000),
    )


async def extend(request: Request) -> Response:
    """Called by the open item page: keeps its lease alive."""
    state = _state(request)
    lease = request.session.get("lease")
    if not lease:
        return JSONResponse({"error": "no item held"}, 409)
    try:
        expires = await run_in_threadpool(
            state.queue.extend, lease["key"], lease["token"], lease_s=state.settings.lease_s
        )
    except ReviewError:
        request.session.pop("lease", None)
        return JSONResponse({"error": "lease lost: the item went back to the queue"}, 409)
    return JSONResponse({"expires_at": expires.isoformat()})


async def release(request: Request) -> Response:
    await _give_back(request)
    return _back(request, "/", "Item given back to the queue.")


async def _give_back(request: Request) -> None:
    lease = request.session.pop("lease", None)
    if lease:
        # Already back in the queue (lease ran out) is what the reviewer asked for.
        with contextlib.suppress(ReviewError):
            await run_in_threadpool(_state(request).queue.release, lease["key"], lease["token"])


async def decide(request: Request) -> Response:
    state = _state(request)
    form = await request.form()
    lease = request.session.get("lease")
    if not lease or form.get("key") != lease["key"]:
        return _back(request, "/", "That page was for an item you no longer hold.")
    action = str(form.get("action", ""))
    note = str(form.get("note", ""))[:MAX_NOTE]
    entry = await run_in_threadpool(state.queue.get, lease["key"])
    if entry is None:
        request.session.pop("lease", None)
        return _back(request, "/", "That item no longer exists.")
    try:
        if action == "escalate":
            await run_in_threadpool(state.queue.escalate, lease["key"], lease["token"], note=note)
        else:
            ticked = {str(r) for r in form.getlist("confirm_rule")}
            confirmed = [
                r for r in confirmable_rules(entry.decision, state.policies) if r in ticked
            ]
            label = _label(action, confirmed, str(form.get("rule_id", "")), state)
            if isinstance(label, str):
                return _back(request, "/item", label)
            violation, rule_ids = label
            await run_in_threadpool(
                lambda: state.queue.resolve(
                    lease["key"],
                    lease["token"],
                    violation=violation,
                    rule_ids=rule_ids,
                    note=note,
                    second_review=_second_review(lease["key"], state.settings.dual_review_share),
                )
            )
    except (LeaseLostError, AlreadyResolvedError, UnknownItemError) as exc:
        request.session.pop("lease", None)
        return _back(request, "/", f"Not recorded: {exc.kind.replace('_', ' ')}.")
    request.session.pop("lease", None)
    if form.get("next") == "1":
        return await take_next(request)
    return _back(request, "/", "Recorded.")


def _label(
    action: str, confirmed: list[str], rule_id: str, state: AppState
) -> tuple[bool, list[str]] | str:
    """The label an action gives, or what is wrong with the form."""
    if action == "confirm":
        if not confirmed:
            return "Nothing confirmed: tick a finding citing a real rule, or change the rule."
        return True, confirmed
    if action == "reject":
        return False, []
    if action == "rule":
        if rule_id not in state.policies:
            return "Choose a rule from the list to change the rule."
        return True, [rule_id]
    return f"Choose an action: {', '.join(ACTIONS)}."


def _second_review(key: str, share: float) -> bool:
    """Whether this key is among the share reviewed twice: fixed per key, spread evenly."""
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return digest < share * 2**64


# ----------------------------------------------------------------------------- settings


async def settings_page(request: Request) -> Response:
    return render(request, "settings.html")


async def settings_save(request: Request) -> Response:
    form = await request.form()
    await run_in_threadpool(
        _state(request).users.set_blur, _user(request).name, form.get("blur") == "1"
    )
    return _back(request, "/settings", "Saved.")


# ----------------------------------------------------------------------------- admin


async def admin(request: Request) -> Response:
    queue: ReviewQueue = _state(request).queue

    def read() -> dict[str, Any]:
        examples = list(queue.labelled())
        return {
            "recent": queue.recent(100),
            "escalations": queue.escalations(100),
            "throughput": throughput(examples, queue.now()),
            "agreement": agreement_by_version(examples),
        }

    return render(request, "admin.html", **await run_in_threadpool(read))


ROUTES = [
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/", queues, methods=["GET"]),
    Route("/next", take_next, methods=["POST"]),
    Route("/item", item_page, methods=["GET"]),
    Route("/item/extend", extend, methods=["POST"]),
    Route("/item/release", release, methods=["POST"]),
    Route("/item/decide", decide, methods=["POST"]),
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", settings_save, methods=["POST"]),
    Route("/admin", admin, methods=["GET"]),
]
