"""Broker-message decoding: whatever bytes sit in Redis, decoding says yes or why not.

A sweep and a worker's start-up decode every message of an abandoned in-flight list; one
that raised (nesting past the recursion limit, say) stopped every worker on that Redis.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile import DEEP, deep_brackets
from workers.transport import decode, undeliverable_reason


def envelope(payload: bytes, **changes: object) -> bytes:
    """A message as kombu's Redis transport stores it, with a JSON body."""
    message: dict[str, object] = {
        "body": base64.b64encode(payload).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "quoteguard.moderate", "id": "t-1"},
        "properties": {
            "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": "quoteguard"},
            "delivery_mode": 2,
            "priority": 0,
            "delivery_tag": "tag-1",
        },
    }
    message.update(changes)
    return json.dumps(message).encode()


GOOD_BODY = json.dumps([[{"id": "a", "text": "hi"}], {}, {}]).encode()


class TestDecode:
    def test_a_task_message_decodes(self) -> None:
        """A message Celery sent is deliverable."""
        assert decode(envelope(GOOD_BODY)) is not None
        assert undeliverable_reason(envelope(GOOD_BODY)) is None

    def test_a_protocol_1_task_and_a_message_of_no_task_decode(self) -> None:
        """Celery's older task shape is deliverable; a message naming no task is left to
        Celery, whose refusal sets it aside."""
        v1 = b'{"task": "quoteguard.moderate", "id": "t", "args": [{"id": "a", "text": "x"}]}'
        assert undeliverable_reason(envelope(v1, headers={})) is None
        assert undeliverable_reason(envelope(b'{"method": "ping"}', headers={})) is None

    @pytest.mark.parametrize(
        ("raw", "reason"),
        [
            (deep_brackets(DEEP), "envelope: nested deeper than 32 levels"),
            (b"[" * 40 + b"]" * 40, "envelope: nested deeper than 32 levels"),
            (b"\xff\xfe{", "envelope: not JSON"),
            (b'{"properties": {}}', "no delivery_info"),
            (envelope(deep_brackets(DEEP)), "body: nested deeper than 200 levels"),
            (envelope(b"{not json"), "body: not JSON"),
            (envelope(b"\xff\xfe"), "body: not JSON"),
            (envelope(GOOD_BODY, body="***"), "body is not base64"),
            (envelope(GOOD_BODY, **{"content-type": "application/x-python-serialize"}), "json"),
            (envelope(GOOD_BODY, headers=json.loads(deep_brackets(20))), "no delivery_info"),
            # Celery would stall (KeyError, taken for a lost connection) or die on these.
            (envelope(GOOD_BODY, headers={"task": "quoteguard.moderate"}), "name or id"),
            (envelope(GOOD_BODY, headers={"task": ["x"], "id": "t"}), "name or id"),
            (envelope(b'"a string"'), "task body is not [args, kwargs, embed]"),
            (envelope(b'{"id": "a", "text": "hi"}'), "task body is not [args, kwargs, embed]"),
            (envelope(b'[[{"id": "a", "text": "hi"}]]'), "task body is not [args, kwargs, embed]"),
            (envelope(b'[[], {}, "x"]'), "embed is not an object"),
            # ... and would ack this away as a failed task: the item would vanish.
            (envelope(b'[[], "x", {}]'), "kwargs not an object"),
            (envelope(b'{"task": "quoteguard.moderate", "args": []}', headers={}), "name or id"),
            (
                envelope(b'{"task": "q", "id": "t", "args": "x", "kwargs": {}}', headers={}),
                "args are not a list",
            ),
        ],
    )
    def test_poison_is_named(self, raw: bytes, reason: str) -> None:
        """Deep nesting, bad bytes and bodies Celery could not decode are each named."""
        assert decode(raw) is None
        assert reason in (undeliverable_reason(raw) or "")


def json_values() -> st.SearchStrategy[object]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=20,
    )


def nest(value: object, depth: int) -> object:
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


class TestFuzz:
    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=500))
    def test_arbitrary_bytes_never_raise(self, raw: bytes) -> None:
        """Any bytes, as a message or as its body, are decoded or refused with a reason."""
        for message in (raw, envelope(raw)):
            assert (decode(message) is None) == (undeliverable_reason(message) is not None)

    @settings(max_examples=150, deadline=None)
    @given(json_values(), st.integers(0, 2_500), st.sampled_from(["body", "headers", "whole"]))
    def test_arbitrarily_nested_json_never_raises(
        self, value: object, depth: int, where: str
    ) -> None:
        """Any JSON at any depth, anywhere in a message, is decoded or refused with a reason."""
        deep = nest(value, depth)
        try:
            encoded = json.dumps(deep).encode()
        except RecursionError:  # the encoder's own limit: build the text by hand instead
            encoded = b"[" * depth + b"0" + b"]" * depth
        if where == "body":
            message = envelope(encoded)
        elif where == "headers":
            message = envelope(GOOD_BODY).replace(
                b'"headers": {', b'"headers": {"x": ' + encoded + b", "
            )
        else:
            message = encoded
        assert (decode(message) is None) == (undeliverable_reason(message) is not None)
