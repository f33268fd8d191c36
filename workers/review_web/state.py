"""What every request handler shares: the queue, accounts, policies, settings, templates."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.templating import Jinja2Templates

from pipeline.policies import PolicySet
from workers.review_queue import ReviewQueue
from workers.review_web.config import ReviewWebSettings
from workers.review_web.users import UserStore


@dataclass(frozen=True)
class AppState:
    queue: ReviewQueue
    users: UserStore
    policies: PolicySet
    settings: ReviewWebSettings
    templates: Jinja2Templates
