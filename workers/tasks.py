"""The tasks: deserialise, call one function, handle retries. Logic lives in workers.service.

Task signatures, for producers that do not import this package:

    quoteguard.moderate(item: {"id": str, "text": str, "meta": {...}})  queue: <namespace>
    quoteguard.webhook(body: str, key: str)                              queue: <namespace>

e.g. `celery_app.send_task("quoteguard.moderate", args=[{"id": "1", "text": "..."}],
queue="quoteguard")`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import redis
import structlog
from celery.exceptions import Reject, Retry
from kombu.exceptions import OperationalError

from workers import metrics, service, webhook
from workers.app import app
from workers.settings import worker_settings

log = structlog.get_logger("quoteguard.workers")

#: Redis (our state or the broker) unreachable: the item's fate is not safely recorded.
INFRASTRUCTURE_ERRORS = (redis.RedisError, OperationalError)


@app.task(bind=True, name="quoteguard.moderate", max_retries=None)  # type: ignore[untyped-decorator]
def moderate(self: Any, *args: Any, **kwargs: Any) -> str:
    """Moderate one item; its Decision goes to the stream (and review queue) exactly once.

    Takes one argument, the item. Any arguments are accepted here, so that a task sent with
    none or several becomes an error Decision instead of a TypeError that Celery acks away.
    """
    try:
        rt = service.runtime()
        outcome = service.handle(
            rt, args, kwargs, task_id=self.request.id, retries=self.request.retries
        )
        if isinstance(outcome, service.RetryLater):
            metrics.RETRIES.labels(outcome.error.kind).inc()
            raise self.retry(exc=outcome.error, countdown=outcome.countdown)
        if outcome.webhook_body is not None and rt.settings.webhook_url:
            deliver_webhook.apply_async(args=[outcome.webhook_body, outcome.key])
    except INFRASTRUCTURE_ERRORS as exc:
        # Requeue; if Redis is down the reject fails too and the unacked message comes back
        # after the visibility timeout. Either way the item is not acked into nowhere.
        log.warning("item_requeued", error=type(exc).__name__, detail=str(exc))
        raise Reject(exc, requeue=True) from exc
    except (Retry, Reject):
        raise
    except Exception as exc:
        # A bug between taking the task and publishing: Celery would ack the task away as
        # failed. The item still ends as an error Decision in review.
        log.exception("internal_error", task_id=self.request.id)
        return service.record_failure(service.runtime(), args, kwargs, exc, task_id=self.request.id)
    return outcome.key


_http: httpx.Client | None = None


def _client() -> httpx.Client:
    global _http  # noqa: PLW0603 - one connection pool per worker process
    if _http is None:
        _http = httpx.Client(timeout=worker_settings().webhook_timeout_s)
    return _http


@app.task(bind=True, name="quoteguard.webhook", max_retries=None)  # type: ignore[untyped-decorator]
def deliver_webhook(self: Any, body: str, key: str) -> None:
    """POST one Decision to the configured webhook, retrying with backoff."""
    settings = worker_settings()
    if not settings.webhook_url:
        return
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    try:
        webhook.deliver(
            _client(),
            settings.webhook_url,
            body.encode(),
            key=key,
            delivery_id=self.request.id,
            secret=secret,
        )
    except webhook.WebhookRetryableError as exc:
        if self.request.retries < settings.webhook_max_retries:
            metrics.WEBHOOKS.labels("retry").inc()
            countdown = service.retry_countdown(
                self.request.retries,
                exc.retry_after,
                base_s=settings.retry_backoff_s,
                cap_s=settings.retry_backoff_max_s,
            )
            raise self.retry(exc=exc, countdown=countdown) from exc
        _give_up(key, str(exc))
    except webhook.WebhookRejectedError as exc:
        _give_up(key, str(exc))
    else:
        metrics.WEBHOOKS.labels("delivered").inc()


def _give_up(key: str, reason: str) -> None:
    """The Decision stays on the stream; record the failed delivery where ops can see it."""
    metrics.WEBHOOKS.labels("failed").inc()
    log.error("webhook_failed", key=key, reason=reason)
    rt = service.runtime()
    failed = rt.settings.key("webhook", "failed")
    rt.redis.lpush(failed, json.dumps({"key": key, "reason": reason}))
    rt.redis.ltrim(failed, 0, 9_999)
