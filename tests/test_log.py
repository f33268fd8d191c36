"""Log events: secrets never appear, hostile characters never reach a terminal raw."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
import structlog

from pipeline.log import configure_logging, printable
from tests.hostile import TERMINAL_ATTACK

#: A key of no known shape (not sk-, no Bearer): only the configured value can find it.
KEY = "qg-live-7Hc2Lx9QpRt4"


@pytest.fixture
def logs() -> Iterator[Callable[[str], None]]:
    """Configures logging in a format with KEY as the secret; undoes it after the test."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)

    def configure(fmt: str) -> None:
        configure_logging("debug", fmt, secrets=[KEY, None, "short"])

    yield configure
    structlog.reset_defaults()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


@pytest.fixture
def json_logs(
    logs: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> pytest.CaptureFixture[str]:
    logs("json")
    return capsys


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


#: What instructor logs when a provider's 401 body echoes the request's headers.
PROVIDER_ERROR = (
    "API call failed on attempt 1: Error code: 401 - {'error': {'message': 'Incorrect API key "
    f"provided: {KEY}. {TERMINAL_ATTACK}', 'echo': {{'Authorization': 'Bearer {KEY}', "
    "'x-api-key': 'other-secret-value'}}}}"
)


class TestThirdPartyLines:
    @pytest.mark.parametrize("fmt", ["json", "console"])
    @pytest.mark.parametrize("name", ["instructor", "openai._base_client", "celery.app.trace"])
    def test_stdlib_lines_are_redacted_and_escaped(
        self,
        logs: Callable[[str], None],
        capsys: pytest.CaptureFixture[str],
        fmt: str,
        name: str,
    ) -> None:
        """A library's plain logging line loses the key and every raw control character."""
        logs(fmt)
        logging.getLogger(name).warning(PROVIDER_ERROR)
        err = capsys.readouterr().err
        assert "Incorrect API key provided" in err
        assert_clean(err)
        if fmt == "json":
            event = json.loads(err)
            assert (event["logger"], event["level"]) == (name, "warning")

    def test_tracebacks_of_library_errors_are_redacted(
        self, json_logs: pytest.CaptureFixture[str]
    ) -> None:
        """An exception logged by a library is rendered, then redacted like any text."""
        try:
            raise RuntimeError(PROVIDER_ERROR)
        except RuntimeError:
            logging.getLogger("kombu").exception("consumer failed")
        err = json_logs.readouterr().err
        assert "RuntimeError" in json.loads(err)["exception"]
        assert_clean(err)

    def test_configured_secret_is_redacted_in_our_events(
        self, json_logs: pytest.CaptureFixture[str]
    ) -> None:
        """The configured key is redacted wherever it appears, whatever its shape."""
        structlog.get_logger().warning("llm_failed", error=PROVIDER_ERROR)
        assert_clean(json_logs.readouterr().err)

    def test_info_lines_keep_their_level(self, json_logs: pytest.CaptureFixture[str]) -> None:
        """An info line of a library is labelled info, not warning."""
        logging.getLogger("celery.worker.strategy").info("Task received")
        assert json.loads(json_logs.readouterr().err)["level"] == "info"


def assert_clean(text: str) -> None:
    for secret in (KEY, "other-secret-value"):
        assert secret not in text
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in text


def test_short_configured_secrets_are_not_searched_for(
    json_logs: pytest.CaptureFixture[str],
) -> None:
    """A configured secret too short to be a key ("short") leaves words containing it alone."""
    structlog.get_logger().info("llm_response", model="shortlist-model", note="in short")
    event = json.loads(json_logs.readouterr().err)
    assert (event["model"], event["note"]) == ("shortlist-model", "in short")


class TestSecretsInUnusualPlaces:
    def test_values_that_are_not_text_are_redacted_as_rendered(
        self, json_logs: pytest.CaptureFixture[str]
    ) -> None:
        """An exception, bytes or any object logged as a value is redacted as it is shown."""
        error = RuntimeError(f"refused: {KEY}")
        structlog.get_logger().warning(
            "failed", error=error, raw=KEY.encode(), errors=(error,), by_key={KEY: 1}
        )
        err = json_logs.readouterr().err
        assert "RuntimeError" in err
        assert KEY not in err

    @pytest.mark.parametrize(
        ("text", "secret"),
        [
            ("ConnectError for url 'https://bob:hunter2pass@api.example.com/v1/chat'", "hunter2"),
            ("redis://:s3cretpassw0rd@redis.internal:6379/0 unreachable", "s3cretpassw0rd"),
            ("GET https://api.example.com/v1?key=AIzaSyQUERYSECRET&alt=json", "AIzaSyQUERY"),
            ("POST https://hooks.example.com/h?sig=abcdef123456&token=tok987654", "abcdef123456"),
            ("POST https://hooks.example.com/h?sig=abcdef123456&token=tok987654", "tok987654"),
        ],
    )
    def test_credentials_in_urls_are_redacted(
        self, json_logs: pytest.CaptureFixture[str], text: str, secret: str
    ) -> None:
        """A password in a URL, or a key, token or signature in its query, is redacted."""
        logging.getLogger("httpx").warning(text)
        err = json_logs.readouterr().err
        assert secret not in err
        assert "example.com" in err or "redis.internal" in err


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_field_names_are_escaped(
    logs: Callable[[str], None], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A field name with control characters reaches no terminal raw, in either format."""
    logs(fmt)
    structlog.get_logger().info("routed", **{f"field{TERMINAL_ATTACK}": "v"})
    err = capsys.readouterr().err
    assert "field" in err
    for raw in ("\x1b", "\x07", "\u202e"):
        assert raw not in err
