"""Security applied to every route once, as ASGI middleware, not remembered route by route.

- `SecurityHeaders`: a strict Content-Security-Policy with a fresh nonce per response for the
  one script file the app ships (so nothing in content can ever run, even if it became
  markup), and the usual headers against framing, sniffing and referrer leaks.
- `Guard` (inside the session middleware): a CSRF token per session, checked on every
  request that changes state; a signed-in user for every route but sign-in and static
  files; the admin role for /admin.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.review_web.users import UserStore

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/signin", "/static/")
ADMIN_PREFIX = "/admin"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
#: Forms here are a note and a few fields; a bigger body is refused before it is read whole.
MAX_FORM_BYTES = 64 * 1024


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = content_security_policy(nonce)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "no-referrer"
                headers["Cross-Origin-Opener-Policy"] = "same-origin"
                # Pages show hostile content and lease state: never from a cache.
                headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Guard:
    """CSRF, authentication and authorization; runs inside Starlette's SessionMiddleware."""

    def __init__(self, app: ASGIApp, users: UserStore) -> None:
        self.app = app
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = scope["session"]
        session.setdefault("csrf", secrets.token_urlsafe(32))
        path: str = scope["path"]
        if scope["method"] not in SAFE_METHODS:
            body = await _read_body(receive)
            if body is None:
                await PlainTextResponse("request body too large", 413)(scope, receive, send)
                return
            if not _csrf_ok(scope, body, session["csrf"]):
                response = PlainTextResponse("missing or wrong CSRF token: reload the page", 403)
                await response(scope, receive, send)
                return
            receive = _replay(body, receive)
        if not path.startswith(PUBLIC_PREFIXES):
            denied = await self._authorize(scope, path)
            if denied is not None:
                await denied(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _authorize(self, scope: Scope, path: str) -> Response | None:
        session = scope["session"]
        name = session.get("user")
        user = await run_in_threadpool(self.users.get, name) if isinstance(name, str) else None
        if user is None:
            session.pop("user", None)  # a removed account signs out everywhere
            if scope["method"] in SAFE_METHODS:
                return RedirectResponse("/signin", 303)
            return PlainTextResponse("sign in first", 401)
        if (path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")) and not user.is_admin:
            return PlainTextResponse("admins only", 403)
        scope["state"]["user"] = user
        return None


def _csrf_ok(scope: Scope, body: bytes, expected: str) -> bool:
    sent = ""
    for name, value in scope["headers"]:
        if name == CSRF_HEADER.encode():
            sent = value.decode("latin-1")
    if not sent:
        form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=100)
        sent = (form.get(CSRF_FIELD) or [""])[0]
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once more for the route (the guard consumed it), then the real channel."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
