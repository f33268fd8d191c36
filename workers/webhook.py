"""Decisions by webhook: a signed POST, classified into retry-later or give-up.

The body is the Decision's JSON, byte for byte as signed. Headers:

    X-Quoteguard-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
    X-Quoteguard-Decision-Key: <policy_version>:<model>:<item_id>
    X-Quoteguard-Delivery: <delivery id, the same on every retry>

Signing the timestamp with the body (the scheme Stripe and Slack use) lets a receiver
reject replays of an old delivery, not only forgeries; `verify` does both checks.
Delivery is at least once: a receiver that sees a Decision key twice keeps the first.

Retries belong to Celery (`workers.tasks.deliver_webhook`); this module only says whether a
failure is worth retrying and how long the receiver asked us to wait.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import httpx
import structlog

from pipeline.errors import QuoteguardError

log = structlog.get_logger("quoteguard.workers")

SIGNATURE_HEADER = "X-Quoteguard-Signature"
KEY_HEADER = "X-Quoteguard-Decision-Key"
DELIVERY_HEADER = "X-Quoteguard-Delivery"
#: A receiver should refuse signatures older than this (seconds): replay protection.
DEFAULT_TOLERANCE_S = 300

#: Client errors that a later attempt may get past: timeout, conflict, too early, too many.
RETRYABLE_4XX = frozenset({408, 409, 425, 429})


class WebhookError(QuoteguardError):
    kind = "webhook_error"


@dataclass
class WebhookRetryableError(WebhookError):
    """The receiver was unreachable or said "later" (5xx, 429, ...); try again."""

    message: str
    retry_after: float | None = None
    kind = "webhook_retryable"

    def __str__(self) -> str:
        return self.message


@dataclass
class WebhookRejectedError(WebhookError):
    """The receiver refused the delivery itself (4xx): retrying would not change its mind."""

    status_code: int
    kind = "webhook_rejected"

    def __str__(self) -> str:
        return f"receiver refused the delivery with {self.status_code}"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """For receivers: the signature is ours, over this body, and recent enough."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, body, timestamp).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def deliver(
    client: httpx.Client,
    url: str,
    body: bytes,
    *,
    key: str,
    delivery_id: str,
    secret: str | None,
) -> int:
    """POST one Decision; return the status, or raise a retryable or rejected error."""
    headers = {"Content-Type": "application/json", KEY_HEADER: key, DELIVERY_HEADER: delivery_id}
    if secret is not None:
        # Signed at send time, so a retry carries a fresh timestamp.
        headers[SIGNATURE_HEADER] = sign(secret, body, int(time.time()))
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise WebhookRetryableError(f"could not deliver: {type(exc).__name__}") from exc
    status = response.status_code
    if status < 300:
        log.info("webhook_delivered", key=key, status=status)
        return status
    if status >= 500 or status in RETRYABLE_4XX:
        raise WebhookRetryableError(
            f"receiver answered {status}", retry_after=_retry_after(response)
        )
    raise WebhookRejectedError(status)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for webhooks; fall back to our own backoff
