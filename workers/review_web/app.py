"""The review web app: Starlette routes, Jinja2 templates (autoescaped), security middleware.

    from workers.review_web.app import create_app
    app = create_app(queue, users, policies, settings, secret)

Middleware, outermost first: security headers (CSP nonce), signed session cookie
(HttpOnly, SameSite=Strict, Secure), then the guard (CSRF, sign-in, roles).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

import jinja2
import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from pipeline.policies import PolicySet
from workers.review_queue import ReviewQueue
from workers.review_web.config import ReviewWebSettings
from workers.review_web.routes import ROUTES
from workers.review_web.security import Guard, SecurityHeaders
from workers.review_web.state import AppState
from workers.review_web.users import UserStore

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "qg_review"


def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its extension: content is hostile
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["pct"] = _pct
    return Jinja2Templates(env=env)


def session_secret(client: redis.Redis[str], namespace: str, settings: ReviewWebSettings) -> str:
    """The configured secret, or one made once per namespace and shared through Redis."""
    if settings.secret is not None:
        return settings.secret.get_secret_value()
    key = f"{namespace}:review:web:secret"
    client.set(key, secrets.token_urlsafe(48), nx=True)
    return str(client.get(key))


def create_app(
    queue: ReviewQueue,
    users: UserStore,
    policies: PolicySet,
    settings: ReviewWebSettings,
    secret: str,
) -> Starlette:
    app = Starlette(
        routes=[*ROUTES, Mount("/static", StaticFiles(directory=HERE / "static"), name="static")],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=settings.session_max_age_s,
                same_site="strict",
                https_only=settings.secure_cookies,
            ),
            Middleware(Guard, users=users),
        ],
    )
    app.state.review = AppState(queue, users, policies, settings, templates())
    return app


def _ago(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
