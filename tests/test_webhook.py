"""Webhook delivery against a real local HTTP receiver: signatures, retry classification."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures_workers import Receiver
from workers.webhook import (
    DELIVERY_HEADER,
    KEY_HEADER,
    SIGNATURE_HEADER,
    WebhookRejectedError,
    WebhookRetryableError,
    deliver,
    sign,
    verify,
)

SECRET = "s3cret-for-tests"
BODY = b'{"item_id": "1", "outcome": "auto_action"}'


@pytest.fixture(scope="module")
def _server() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def receiver(_server: Receiver) -> Receiver:
    """One server for the module (shutting one down takes half a second); fresh records."""
    _server.statuses.clear()
    _server.received.clear()
    return _server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def send(client: httpx.Client, url: str, secret: str | None = SECRET) -> int:
    return deliver(client, url, BODY, key="pv:m:1", delivery_id="d-1", secret=secret)


class TestSignature:
    def test_round_trip(self) -> None:
        """A signature made now over this body verifies."""
        assert verify(SECRET, BODY, sign(SECRET, BODY, int(time.time())))

    @pytest.mark.parametrize(
        ("secret", "body", "age_s"),
        [
            ("wrong-secret", BODY, 0),
            (SECRET, BODY + b" ", 0),
            (SECRET, BODY, 3600),
        ],
        ids=["forged", "tampered", "replayed"],
    )
    def test_rejects(self, secret: str, body: bytes, age_s: int) -> None:
        """Another key, another body or an old timestamp fail verification."""
        header = sign(SECRET, BODY, int(time.time()) - age_s)
        assert not verify(secret, body, header)

    @pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "nonsense"])
    def test_malformed_header(self, header: str) -> None:
        """A garbled header is a failed verification, not an exception."""
        assert not verify(SECRET, BODY, header)


class TestDeliver:
    def test_delivers_signed_body_and_headers(
        self, receiver: Receiver, client: httpx.Client
    ) -> None:
        """The receiver gets the exact body, the key, the delivery id and a valid signature."""
        assert send(client, receiver.url) == 200
        [(headers, body)] = receiver.received
        assert body == BODY
        assert headers[KEY_HEADER] == "pv:m:1"
        assert headers[DELIVERY_HEADER] == "d-1"
        assert verify(SECRET, body, headers[SIGNATURE_HEADER])

    def test_unsigned_without_secret(self, receiver: Receiver, client: httpx.Client) -> None:
        """No secret configured: no signature header (rather than a meaningless one)."""
        send(client, receiver.url, secret=None)
        assert SIGNATURE_HEADER not in receiver.received[0][0]

    @pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
    def test_retryable_statuses(
        self, receiver: Receiver, client: httpx.Client, status: int
    ) -> None:
        """Server errors and 'later' client statuses are worth retrying."""
        receiver.statuses.append((status, {"Retry-After": "7"}))
        with pytest.raises(WebhookRetryableError) as info:
            send(client, receiver.url)
        assert info.value.retry_after == 7.0

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
    def test_rejections_are_final(
        self, receiver: Receiver, client: httpx.Client, status: int
    ) -> None:
        """A receiver refusing the delivery itself is not retried."""
        receiver.statuses.append((status, {}))
        with pytest.raises(WebhookRejectedError) as info:
            send(client, receiver.url)
        assert info.value.status_code == status

    def test_unreachable_is_retryable(self, client: httpx.Client) -> None:
        """Nobody listening is a transient failure."""
        with pytest.raises(WebhookRetryableError):
            send(client, "http://127.0.0.1:9/hook")
