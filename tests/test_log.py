"""Log events: secrets never appear, hostile characters never reach a terminal raw."""

from __future__ import annotations

import json

import pytest
import structlog

from pipeline.log import configure_logging, printable


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> pytest.CaptureFixture[str]:
    configure_logging("debug", "json")
    yield capsys
    structlog.reset_defaults()


class TestJsonLogs:
    def test_secrets_are_redacted_by_key_and_by_shape(
        self, json_logs: pytest.CaptureFixture[str]
    ) -> None:
        """An api_key field and an sk- key inside a message are both redacted."""
        structlog.get_logger().info(
            "llm_call", api_key="sk-abcdefghijklmnop", detail="Bearer abc.def", prompt_tokens=12
        )
        line = json_logs.readouterr().err
        assert "abcdefghijklmnop" not in line
        assert "abc.def" not in line
        assert json.loads(line)["prompt_tokens"] == 12

    def test_control_and_bidi_characters_are_escaped(
        self, json_logs: pytest.CaptureFixture[str]
    ) -> None:
        """An item id with ESC, NUL and a right-to-left override is logged as escapes."""
        hostile = "id\x1b[31m\x00\u202eevil"
        structlog.get_logger().info("routed", item_id=hostile)
        line = json_logs.readouterr().err
        for raw in ("\x1b", "\x00", "\u202e"):
            assert raw not in line
        assert json.loads(line)["item_id"] == hostile


class TestPrintable:
    @pytest.mark.parametrize(
        ("raw", "shown"),
        [
            ("plain text", "plain text"),
            ("a\x1b[2Jb", "a\\u001b[2Jb"),
            ("\u202eabc", "\\u202eabc"),
            ("zero\u200bwidth", "zero\\u200bwidth"),
        ],
    )
    def test_escapes(self, raw: str, shown: str) -> None:
        """Control and format characters are shown as escapes, the rest untouched."""
        assert printable(raw) == shown


class TestNestedSecrets:
    def test_nested_and_token_keys_are_redacted(
        self, json_logs: pytest.CaptureFixture[str]
    ) -> None:
        """Secrets inside dicts and keys like access_token are redacted; token counts are not."""
        structlog.get_logger().info(
            "call",
            headers={"Authorization": "Bearer abc.def"},
            access_token="t0ps3cret",
            completion_tokens=7,
        )
        event = json.loads(json_logs.readouterr().err)
        assert event["headers"]["Authorization"] == "[redacted]"
        assert event["access_token"] == "[redacted]"
        assert event["completion_tokens"] == 7
