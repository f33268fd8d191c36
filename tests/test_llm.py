"""The one door to the model: who may talk to it, what each call costs, and the budget."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import httpx2

from pipeline.budget import call_budget
from pipeline.config import Settings, load_settings
from pipeline.llm import REASK_PROMPT, LLMClient
from pipeline.models import ContentItem, Decision
from pipeline.policies import load_policies
from pipeline.runner import Moderator
from workers.settings import SDK_MAX_BACKOFF_S, WorkerSettings, longest_task_s

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
VALID = json.dumps({"findings": []})

Handler = Callable[[httpx2.Request], httpx2.Response]


def completion(content: str, finish_reason: str = "stop") -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{
                "index": 0, "finish_reason": finish_reason, "logprobs": None,
                "message": {"role": "assistant", "content": content},
            }],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        },
    )  # fmt: skip


def server_error() -> httpx2.Response:
    # retry-after-ms keeps the SDK's backoff to a millisecond in tests.
    body = {"error": {"message": "boom", "type": "server_error"}}
    return httpx2.Response(500, json=body, headers={"retry-after-ms": "1"})


def settings(**overrides: object) -> Settings:
    return load_settings(model="m", base_url="http://provider.invalid/v1", api_key="k",
                         **overrides)  # fmt: skip


def moderate(handler: Handler, config: Settings) -> Decision:
    client = LLMClient(config, transport=httpx2.MockTransport(handler))
    with Moderator(config, load_policies(), client) as moderator:
        return moderator.moderate(ContentItem(id="a", text="some text"))


class TestOneDoor:
    def test_only_llm_imports_the_sdk_client_and_instructor(self) -> None:
        """Outside pipeline/llm.py the pipeline imports the SDK's types only, never a client."""
        offenders = []
        for path in PIPELINE.rglob("*.py"):
            if path.name == "llm.py" and path.parent == PIPELINE:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )  # fmt: skip
                for name in names:
                    top = name.split(".")[0]
                    if top == "instructor" or (
                        top == "openai" and not name.startswith("openai.types")
                    ):
                        offenders.append(f"{path.relative_to(PIPELINE)}: {name}")
        assert offenders == []

    def test_nothing_imports_private_names_of_llm(self) -> None:
        """No module reaches into pipeline.llm's private helpers (the second door of old)."""
        offenders = []
        for path in [*PIPELINE.rglob("*.py"), *(PIPELINE.parent / "workers").rglob("*.py")]:
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module == "pipeline.llm":
                    offenders += [a.name for a in node.names if a.name.startswith("_")]
        assert offenders == []


class TestCallsCounted:
    def test_error_decision_counts_its_calls(self) -> None:
        """A provider that keeps failing: the error Decision says how many calls it cost."""
        calls = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            calls.append(request)
            return server_error()

        decision = moderate(handler, settings(max_transport_retries=2))
        assert decision.errors[0].kind == "llm_transient"
        assert decision.usage.calls == len(calls) == 3

    def test_truncated_answers_spend_the_reask_budget(self) -> None:
        """Answers cut at the token limit are retried within the re-ask budget, not beyond."""
        calls = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            calls.append(request)
            return completion('{"findings": [', finish_reason="length")

        config = settings(max_reasks=2)
        decision = moderate(handler, config)
        assert decision.errors[0].kind == "llm_invalid_output"
        assert "truncated" in decision.errors[0].message
        assert decision.usage.calls == len(calls) == call_budget(config).answers == 3

    def test_invalid_json_is_reasked_with_its_error(self) -> None:
        """An answer that does not fit the schema is re-asked with the validation error."""
        bodies: list[dict[str, object]] = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            bodies.append(json.loads(request.content))
            return completion("not json at all" if len(bodies) == 1 else VALID)

        decision = moderate(handler, settings())
        assert decision.errors == []
        assert decision.usage.calls == 2
        reask = bodies[1]["messages"]
        assert isinstance(reask, list)
        assert reask[-2] == {"role": "assistant", "content": "not json at all"}
        assert reask[-1]["content"].startswith(REASK_PROMPT)

    def test_worst_case_is_the_budget(self) -> None:
        """Every answer invalid after a transport retry each: exactly call_budget().calls."""
        calls = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            calls.append(request)
            return server_error() if len(calls) % 2 else completion("not json")

        config = settings(max_transport_retries=1, max_reasks=2)
        decision = moderate(handler, config)
        assert decision.errors[0].kind == "llm_invalid_output"
        assert decision.usage.calls == len(calls) == call_budget(config).calls == 6


class TestVisibilityCheck:
    def test_longest_task_is_bounded_by_the_call_budget(self) -> None:
        """The workers' start-up bound counts every call of the budget, fallback included."""
        worker = WorkerSettings()
        per_call = Settings().timeout_s + worker.rate_wait_max_s
        plain = settings()
        sampled = settings(fallback={"enabled": True})
        assert call_budget(plain).calls == 12
        assert call_budget(sampled).calls == 16
        extra = longest_task_s(worker, sampled) - longest_task_s(worker, plain)
        assert extra == per_call * 4 + SDK_MAX_BACKOFF_S * 3


class TestModes:
    def test_json_mode_puts_the_schema_in_the_system_message(self) -> None:
        """output_mode=json: json_object format, schema appended to the cached system prompt."""
        bodies: list[dict[str, object]] = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            bodies.append(json.loads(request.content))
            return completion(VALID)

        decision = moderate(handler, settings(output_mode="json"))
        assert decision.errors == []
        body = bodies[0]
        assert body["response_format"] == {"type": "json_object"}
        messages = body["messages"]
        assert isinstance(messages, list)
        assert '"findings"' in messages[0]["content"]
        assert messages[1]["role"] == "user"

    def test_json_schema_mode_sends_the_schema_as_response_format(self) -> None:
        """output_mode=json_schema: the schema travels in response_format, prompt untouched."""
        bodies: list[dict[str, object]] = []

        def handler(request: httpx2.Request) -> httpx2.Response:
            bodies.append(json.loads(request.content))
            return completion(VALID)

        moderate(handler, settings())
        response_format = bodies[0]["response_format"]
        assert isinstance(response_format, dict)
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["name"] == "ModerationResult"


class TestProviderShapes:
    def test_a_response_off_the_openai_shape_still_parses(self) -> None:
        """A provider's own shape (no `created`, another `object`) is read leniently."""

        def handler(_: httpx2.Request) -> httpx2.Response:
            body = json.loads(completion(VALID).content)
            del body["created"]
            body["object"] = "chat.completion.vendor"
            return httpx2.Response(200, json=body)

        decision = moderate(handler, settings())
        assert decision.errors == []
        assert decision.outcome == "no_violation"
        assert decision.usage.prompt_tokens == 10

    def test_a_refusal_carries_the_providers_reason(self) -> None:
        """A 4xx Decision says why the provider refused (an unknown model, say), not only 404."""

        def handler(_: httpx2.Request) -> httpx2.Response:
            body = {"error": {"message": "The model `m` does not exist", "type": "invalid"}}
            return httpx2.Response(404, json=body)

        decision = moderate(handler, settings())
        assert decision.errors[0].kind == "llm_request"
        assert decision.errors[0].message == (
            "provider refused the request: 404: The model `m` does not exist"
        )
        assert decision.usage.calls == 1
