"""Shared fixtures: the simulated model, in-process on free ports.

`sim_server` is one server for the whole session (default config): use it for behaviour
that does not depend on counters or faults. `sim_factory` starts a server with the config a
test needs (faults, seed, latency) and stops it after the test; its /sim/stats count only
that test's requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pipeline.sim.config import SimConfig
from pipeline.sim.server import SimServer

SimFactory = Callable[..., SimServer]


@pytest.fixture(scope="session")
def sim_server() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:PORT/v1`) of a session-wide simulated model."""
    with SimServer(SimConfig()) as server:
        yield server.base_url


@pytest.fixture
def sim_factory() -> Iterator[SimFactory]:
    """Start a simulated model: `sim_factory(SimConfig(...))` or `sim_factory(seed=3, ...)`."""
    started: list[SimServer] = []

    def start(config: SimConfig | None = None, **fields: object) -> SimServer:
        if config is None:
            config = SimConfig.model_validate(fields)
        server = SimServer(config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
