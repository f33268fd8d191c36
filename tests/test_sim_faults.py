"""Fault injection: what each fault looks like on the wire, and the SDK's retries against it."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import instructor
import openai
import pytest
from instructor.core.exceptions import IncompleteOutputException

from pipeline.policies import load_policies
from pipeline.prompt import build_messages
from pipeline.schema import ModerationResult
from pipeline.sim.config import FAULT_KINDS, FaultConfig, LatencyConfig, SimConfig
from pipeline.sim.faults import MALFORMATIONS, FaultPlanner
from pipeline.sim.server import FAULT_HEADER
from tests.conftest import SimFactory

POLICIES = load_policies()
CONTENT = "You are a worthless idiot and nobody wants you here."


def body(**params: object) -> dict[str, object]:
    return {"model": "sim-calibrated", "messages": build_messages(CONTENT, POLICIES), **params}


def post(base_url: str, fault: str | None = None, **params: object) -> httpx.Response:
    headers = {FAULT_HEADER: fault} if fault else {}
    return httpx.post(f"{base_url}/chat/completions", json=body(**params), headers=headers)


def stats(url: str) -> dict[str, object]:
    result: dict[str, object] = httpx.get(f"{url}/sim/stats").json()
    return result


class TestRateLimit:
    def test_429_with_retry_after_headers_and_openai_body(self, sim_server: str) -> None:
        """A 429 carries retry-after (s) and retry-after-ms, and OpenAI's error body."""
        response = post(sim_server, "rate_limit")
        assert response.status_code == 429
        assert response.headers["retry-after-ms"] == "50"
        assert response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["code"] == "rate_limit_exceeded"
        assert error["type"] == "requests"

    def test_sdk_retry_honours_retry_after_ms(
        self, sim_server: str, sim_factory: SimFactory
    ) -> None:
        """Two 429s then an answer: the SDK retries after ~50 ms each, not its 0.5 s+ backoff."""
        # The SDK's first call in a process pays for one-off set-up (~0.5 s); pay it elsewhere.
        warm = openai.OpenAI(base_url=sim_server, api_key="sim")
        warm.chat.completions.create(**body())  # type: ignore[call-overload]
        sim = sim_factory(faults=FaultConfig(script=("rate_limit", "rate_limit")))
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=2)
        started = time.monotonic()
        completion = client.chat.completions.create(**body())  # type: ignore[call-overload]
        elapsed = time.monotonic() - started
        assert completion.choices[0].message.content
        counted = stats(sim.url)
        assert counted["requests"] == 3
        assert counted["completions"] == 1
        assert counted["faults"] == {**dict.fromkeys(FAULT_KINDS, 0), "rate_limit": 2}
        # Without retry-after-ms the SDK would wait >= 0.375 + 0.75 s between the three tries.
        assert elapsed < 0.9

    def test_retries_are_bounded(self, sim_factory: SimFactory) -> None:
        """Always 429: the SDK gives up after max_retries + 1 requests with RateLimitError."""
        sim = sim_factory(faults=FaultConfig(rate_limit=1.0))
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=2)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(**body())  # type: ignore[call-overload]
        assert stats(sim.url)["requests"] == 3


class TestServerError:
    def test_500_in_openai_shape(self, sim_server: str) -> None:
        """A 500 carries a server_error body."""
        response = post(sim_server, "server_error")
        assert response.status_code == 500
        assert response.json()["error"]["type"] == "server_error"

    def test_sdk_retries_a_500(self, sim_factory: SimFactory) -> None:
        """One 500 then an answer: the SDK's own retry gets the answer, two requests in all."""
        sim = sim_factory(faults=FaultConfig(script=("server_error",)))
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=1)
        assert client.chat.completions.create(**body()).choices  # type: ignore[call-overload]
        assert stats(sim.url)["requests"] == 2


class TestTimeout:
    def test_stall_longer_than_the_client_timeout(self, sim_factory: SimFactory) -> None:
        """A stalled request outlasts the client's timeout: APITimeoutError, counted as a fault."""
        sim = sim_factory(faults=FaultConfig(script=("timeout",), timeout_s=2.0))
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(**body())  # type: ignore[call-overload]
        assert stats(sim.url)["faults"]["timeout"] == 1  # type: ignore[index]

    def test_a_patient_client_gets_the_answer(self, sim_factory: SimFactory) -> None:
        """The stall ends in a normal answer for a client that waits long enough."""
        sim = sim_factory(faults=FaultConfig(script=("timeout",), timeout_s=0.2))
        started = time.monotonic()
        response = post(sim.base_url)
        assert response.status_code == 200
        assert time.monotonic() - started >= 0.2


class TestBrokenContent:
    def test_malformed_json_finishes_with_stop(self, sim_server: str) -> None:
        """Malformed content is not JSON, yet claims to be complete."""
        response = post(sim_server, "malformed", logprobs=True)
        choice = response.json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        with pytest.raises(json.JSONDecodeError):
            json.loads(choice["message"]["content"])
        tokens = "".join(t["token"] for t in choice["logprobs"]["content"])
        assert tokens == choice["message"]["content"]

    @pytest.mark.parametrize("name", sorted(MALFORMATIONS))
    def test_every_malformation_breaks_json(self, name: str) -> None:
        """Each way of breaking the JSON really breaks it."""
        with pytest.raises(json.JSONDecodeError):
            json.loads(MALFORMATIONS[name]('{"findings": []}'))

    def test_truncated_is_a_prefix_with_finish_reason_length(self, sim_server: str) -> None:
        """A truncated answer is a prefix of the full one and says finish_reason length."""
        full = post(sim_server, temperature=0, logprobs=True).json()["choices"][0]
        cut = post(sim_server, "truncated", temperature=0, logprobs=True).json()
        choice = cut["choices"][0]
        assert choice["finish_reason"] == "length"
        assert full["message"]["content"].startswith(choice["message"]["content"])
        assert len(choice["message"]["content"]) < len(full["message"]["content"])
        assert cut["usage"]["completion_tokens"] == len(choice["logprobs"]["content"])

    def test_instructor_sees_truncation_as_incomplete(self, sim_factory: SimFactory) -> None:
        """instructor raises on finish_reason length rather than parsing half a JSON."""
        sim = sim_factory(faults=FaultConfig(truncated=1.0))
        client = openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0)
        patched = instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA)
        with pytest.raises(IncompleteOutputException):
            patched.chat.completions.create(
                response_model=ModerationResult,
                max_retries=1,
                **body(),  # type: ignore[arg-type]
            )


class TestFaultHeader:
    def test_unknown_fault_is_400(self, sim_server: str) -> None:
        """An unknown x-sim-fault value is refused."""
        assert post(sim_server, "meteor").status_code == 400


class TestLatency:
    def test_fixed_latency_delays_every_answer(self, sim_factory: SimFactory) -> None:
        """A fixed mean latency is added before answering."""
        sim = sim_factory(latency=LatencyConfig(mean_ms=150))
        started = time.monotonic()
        assert post(sim.base_url).status_code == 200
        assert time.monotonic() - started >= 0.15

    def test_lognormal_latency_has_the_configured_mean(self) -> None:
        """Lognormal delays vary around the configured mean."""
        planner = FaultPlanner(
            FaultConfig(), LatencyConfig(mean_ms=100, distribution="lognormal"), seed=1
        )
        delays = [planner.next().latency_s for _ in range(4000)]
        assert len(set(delays)) > 100
        assert sum(delays) / len(delays) == pytest.approx(0.1, rel=0.05)


class TestFaultPlanner:
    def test_rates_are_honoured(self) -> None:
        """Each kind is drawn at about its configured rate."""
        config = FaultConfig(rate_limit=0.1, server_error=0.1, timeout=0.1, malformed=0.1)
        planner = FaultPlanner(config, LatencyConfig(), seed=3)
        kinds = Counter(planner.next().fault for _ in range(5000))
        for kind in ("rate_limit", "server_error", "timeout", "malformed"):
            assert kinds[kind] / 5000 == pytest.approx(0.1, abs=0.02)
        assert kinds["truncated"] == 0
        assert kinds[None] / 5000 == pytest.approx(0.6, abs=0.03)

    def test_same_seed_same_faults(self) -> None:
        """Faults are reproducible from the seed; reset starts the sequence over."""
        config = FaultConfig(rate_limit=0.3, server_error=0.3)
        one = FaultPlanner(config, LatencyConfig(), seed=9)
        first = [one.next().fault for _ in range(50)]
        one.reset()
        assert [one.next().fault for _ in range(50)] == first

    def test_script_comes_first(self) -> None:
        """Scripted faults hit the first requests in order, then the rates apply."""
        planner = FaultPlanner(FaultConfig(script=("timeout", "malformed")), LatencyConfig(), 0)
        assert [planner.next().fault for _ in range(3)] == ["timeout", "malformed", None]

    def test_rates_over_one_are_refused(self) -> None:
        """A config whose rates add up to more than 1 does not validate."""
        with pytest.raises(ValueError, match="more than 1"):
            SimConfig(faults=FaultConfig(rate_limit=0.6, server_error=0.6))
