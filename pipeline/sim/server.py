"""The simulated model over HTTP: an OpenAI-compatible Starlette app and its runners.

Routes: POST /v1/chat/completions, GET /v1/models[/{id}], GET /sim/stats, POST /sim/reset,
GET /health. A request may force a fault with the `x-sim-fault` header (one of
`FAULT_KINDS`), so a test can meet a 500 without starting a server configured for it.

`SimServer` runs the app on uvicorn in a background thread on a free port, for tests and
for in-process demos; `serve` runs it in the foreground for the CLI.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.sim.config import FAULT_KINDS, FaultKind, SimConfig
from pipeline.sim.engine import Answer, PromptCache, complete
from pipeline.sim.faults import FaultPlanner
from pipeline.sim.profiles import Profile, all_profiles, resolve
from pipeline.sim.wire import ChatRequest, SimError, parse_request

FAULT_HEADER = "x-sim-fault"
#: Largest request body read: a prompt of max_content_chars (100k) with the policy text and
#: re-asks is well under 2 MB. A bigger one is refused (413) before it is read whole.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Seconds `serve` waits for open requests (a stalled timeout fault) after SIGTERM.
SHUTDOWN_GRACE_S = 2


@dataclass
class Stats:
    """Counters a test reads to bound how many calls were made and what they met."""

    requests: int = 0
    completions: int = 0
    findings: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    hallucinations: Counter[str] = field(default_factory=Counter)
    by_model: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "findings": self.findings,
                "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
                "errors": dict(self.errors),
                "hallucinations": {k: self.hallucinations[k] for k in ("rule_id", "quote")},
                "by_model": dict(self.by_model),
            }

    def reset(self) -> None:
        with self.lock:
            self.requests = self.completions = self.findings = 0
            for counter in (self.faults, self.errors, self.hallucinations, self.by_model):
                counter.clear()


class SimState:
    """Everything the app keeps between requests."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.cache = PromptCache()
        self.planner = FaultPlanner(config.faults, config.latency, config.seed)
        self._ids = 0
        self._lock = threading.Lock()

    def next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"chatcmpl-sim{self.config.seed:x}x{self._ids:08d}"

    def reset(self) -> None:
        """Counters, prompt cache and fault sequence back to a fresh server's."""
        self.stats.reset()
        self.cache.clear()
        self.planner.reset()


def _json(body: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # Non-ASCII as is, like OpenAI; control characters are escaped by json itself.
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    return Response(data, status, headers=headers, media_type="application/json")


def _error(exc: SimError, state: SimState) -> Response:
    with state.stats.lock:
        state.stats.errors[exc.code or str(exc.status)] += 1
    return _json(exc.body(), exc.status, exc.headers)


def _model_card(profile: Profile) -> dict[str, Any]:
    return {"id": profile.name, "object": "model", "created": 0, "owned_by": "quoteguard-sim"}


async def _stall(request: Request, seconds: float) -> None:
    """Wait, but stop early if the client gave up: nobody is left to answer."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if await request.is_disconnected():
            return
        await asyncio.sleep(min(0.05, left))


async def _bounded_body(request: Request) -> bytes:
    """The body, or a 413 as soon as it is known to be over MAX_BODY_BYTES (never read whole)."""
    too_large = SimError(
        413, f"The request body is larger than {MAX_BODY_BYTES:,} bytes.", code="body_too_large"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _forced_fault(request: Request) -> FaultKind | None:
    value = request.headers.get(FAULT_HEADER)
    if value is None:
        return None
    for kind in FAULT_KINDS:
        if value == kind:
            return kind
    raise SimError(400, f"{FAULT_HEADER} must be one of {', '.join(FAULT_KINDS)}")


def _raise_for_fault(fault: FaultKind | None, config: SimConfig) -> None:
    if fault == "rate_limit":
        ms = config.faults.retry_after_ms
        raise SimError(
            429,
            "Rate limit reached for requests (simulated). Please try again later.",
            type_="requests",
            code="rate_limit_exceeded",
            # retry-after is whole seconds by the HTTP spec; the SDK prefers the -ms header.
            headers={"retry-after": str(math.ceil(ms / 1000)), "retry-after-ms": str(ms)},
        )
    if fault == "server_error":
        raise SimError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type_="server_error",
        )


async def chat_completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    with state.stats.lock:
        state.stats.requests += 1
    started = time.monotonic()
    try:
        raw = await _bounded_body(request)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise SimError(400, "The request body is not valid JSON.") from exc
        chat: ChatRequest = parse_request(body)
        profile = resolve(chat.model)
        if profile is None:
            raise SimError(
                404,
                f"The model `{chat.model}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        plan = state.planner.next(_forced_fault(request))
        if plan.fault is not None:
            with state.stats.lock:
                state.stats.faults[plan.fault] += 1
        await asyncio.sleep(plan.latency_s)
        _raise_for_fault(plan.fault, state.config)
        if plan.fault == "timeout":
            await _stall(request, state.config.faults.timeout_s)
        # Computed on the event loop: a completion takes a few ms of CPU, and handing it to a
        # worker thread costs more than that in GIL hand-offs (measured: 15 ms vs 2 ms).
        answer: Answer = complete(
            chat,
            profile,
            state.config,
            request_id=state.next_id(),
            cache=state.cache,
            fault=plan.fault,
        )
    except SimError as exc:
        return _error(exc, state)
    with state.stats.lock:
        state.stats.completions += 1
        state.stats.by_model[profile.name] += 1
        state.stats.findings += sum(len(found) for found in answer.findings)
        state.stats.hallucinations.update(answer.corruptions)
    elapsed_ms = round((time.monotonic() - started) * 1000)
    headers = {"x-request-id": answer.body["id"], "openai-processing-ms": str(elapsed_ms)}
    return _json(answer.body, headers=headers)


async def list_models(_: Request) -> Response:
    return _json({"object": "list", "data": [_model_card(p) for p in all_profiles()]})


async def get_model(request: Request) -> Response:
    profile = resolve(request.path_params["model"])
    if profile is None:
        exc = SimError(404, "The model does not exist.", code="model_not_found", param="model")
        return _error(exc, request.app.state.sim)
    return _json(_model_card(profile))


async def stats(request: Request) -> Response:
    state: SimState = request.app.state.sim
    return _json(state.stats.snapshot())


async def reset(request: Request) -> Response:
    state: SimState = request.app.state.sim
    state.reset()
    return _json(state.stats.snapshot())


async def health(_: Request) -> Response:
    return _json({"status": "ok"})


def create_app(config: SimConfig | None = None) -> Starlette:
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            Route("/v1/models/{model:path}", get_model, methods=["GET"]),
            Route("/sim/stats", stats, methods=["GET"]),
            Route("/sim/reset", reset, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    app.state.sim = SimState(config or SimConfig())
    return app


class SimServer:
    """The app on uvicorn in a daemon thread; `with SimServer(config) as sim: sim.base_url`."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.config = config or SimConfig()
        self.app = create_app(self.config)
        self.host = host
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
                # A stalled (timeout-fault) request must not hold up a test's teardown.
                timeout_graceful_shutdown=1,
            )
        )
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def state(self) -> SimState:
        state: SimState = self.app.state.sim
        return state

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What `openai.OpenAI(base_url=...)` takes."""
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> SimServer:
        self._thread = threading.Thread(target=self._server.run, name="sim-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                msg = f"simulated model did not start on {self.host}:{self.port}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        # Port 0 asked the OS for a free port; read back the one it gave.
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(config: SimConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the simulator in the foreground until interrupted."""
    # SIGTERM and Ctrl-C stop it: uvicorn's handlers, with a short grace for open requests.
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
