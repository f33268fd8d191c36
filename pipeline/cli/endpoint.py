"""Where a command's model calls go: the given endpoint, or a simulator started for it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pipeline.config import Settings


@contextmanager
def endpoint(base_url: str | None, sim: bool) -> Iterator[tuple[str | None, str | None]]:
    """(base_url, api_key): the given endpoint, or an in-process simulator for the block."""
    if not sim:
        yield base_url, None
        return
    if base_url is not None:
        raise typer.BadParameter("--sim starts its own endpoint: drop --base-url")
    from pipeline.sim.server import SimServer  # noqa: PLC0415 - only --sim needs it

    with SimServer() as server:
        yield server.base_url, "sim"


def require_endpoint(settings: Settings, *, sim_option: bool = True) -> None:
    """A usage error, before any call, when there is neither an API key nor a --base-url."""
    if settings.base_url is None and settings.api_key is None:
        raise typer.BadParameter(
            "no API key: set OPENAI_API_KEY (or QUOTEGUARD_API_KEY), "
            + (
                "point --base-url at an OpenAI-compatible server, or use --sim"
                if sim_option
                else "or point --base-url at an OpenAI-compatible server"
            ),
            param_hint="--base-url",
        )
