"""`quoteguard moderate` (a JSONL file through any provider) and `quoteguard demo`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from pipeline.cli.endpoint import require_endpoint
from pipeline.cli.options import BaseUrlOpt, ConcurrencyOpt, PoliciesOpt, ProfilesOpt

if TYPE_CHECKING:  # imported inside the commands at run time (see pipeline.cli)
    from pipeline.config import Settings
    from pipeline.models import Decision
    from pipeline.summary import RunSummary

DEMO_ITEMS = Path(__file__).resolve().parents[1] / "data" / "demo.jsonl"

InputPath = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="JSONL of items.")
]
OutPath = Annotated[Path, typer.Option("--out", "-o", help="Where Decisions are written.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model name for the provider.")]


def register(app: typer.Typer) -> None:
    app.command("moderate")(moderate)
    app.command("demo")(demo)


def moderate(
    input_path: InputPath,
    out: OutPath = Path("decisions.jsonl"),
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    concurrency: ConcurrencyOpt = None,
    policies: PoliciesOpt = None,
    profiles: ProfilesOpt = None,
) -> None:
    """Moderate every item of a JSONL file ({"id", "text", "meta"} per line).

    Writes one Decision per line to --out. Exits non-zero only on usage errors: an item that
    fails becomes an error Decision routed to review.
    """
    settings = _settings(
        model=model,
        base_url=base_url,
        concurrency=concurrency,
        policies_dir=policies,
        profiles_dir=profiles,
    )
    require_endpoint(settings, sim_option=False)
    summary = _run(settings, input_path, out)
    _print_summary(summary, f"quoteguard: {settings.model}", out)


def demo(
    out: OutPath = Path("decisions.jsonl"),
    model: Annotated[
        str, typer.Option("--model", help="Simulated profile: sim-calibrated, sim-collapsed, ...")
    ] = "sim-calibrated+hallucinating",
    concurrency: ConcurrencyOpt = None,
) -> None:
    """Run the bundled example set through the whole pipeline against the simulated model."""
    from pipeline.sim.server import SimServer  # noqa: PLC0415 - see pipeline.cli

    with SimServer() as server:
        # The demo's reader wants the table, not a JSON event per stage; the events are
        # still one QUOTEGUARD_LOG_LEVEL=info away.
        quiet = None if "QUOTEGUARD_LOG_LEVEL" in os.environ else "warning"
        settings = _settings(
            model=model,
            base_url=server.base_url,
            api_key="sim",
            concurrency=concurrency,
            log_level=quiet,
        )
        summary = _run(settings, DEMO_ITEMS, out)
    _print_summary(summary, f"quoteguard demo: {model} (simulated)", out)


def _print_summary(summary: RunSummary, title: str, out: Path) -> None:
    from pipeline.cli.render import console, summary_table  # noqa: PLC0415 - see pipeline.cli

    console.print(summary_table(summary, title))
    console.print(f"Decisions written to {out}")


def _settings(**overrides: object) -> Settings:
    from pipeline.config import load_settings  # noqa: PLC0415 - see pipeline.cli
    from pipeline.log import configure_logging  # noqa: PLC0415

    try:
        settings = load_settings(**overrides)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    configure_logging(settings.log_level, settings.log_format, secrets=[settings.api_key])
    return settings


def _run(settings: Settings, input_path: Path, out: Path) -> RunSummary:
    from pipeline.batch import run_batch  # noqa: PLC0415 - see pipeline.cli
    from pipeline.errors import QuoteguardError  # noqa: PLC0415
    from pipeline.inputs import read_items  # noqa: PLC0415
    from pipeline.runner import Moderator  # noqa: PLC0415
    from pipeline.summary import RunSummary  # noqa: PLC0415

    try:
        moderator = Moderator.from_settings(settings)
    except QuoteguardError as exc:
        raise typer.BadParameter(str(exc)) from exc
    summary = RunSummary()
    total = _count_lines(input_path)
    with _progress(total) as advance, out.open("w", encoding="utf-8") as sink:

        def on_decision(decision: Decision) -> None:
            _write(sink, decision)
            summary.add(decision)
            advance()

        run_batch(moderator, read_items(input_path), on_decision, settings.concurrency)
    return summary


def _write(sink: TextIO, decision: Decision) -> None:
    sink.write(decision.model_dump_json() + "\n")
    sink.flush()


def _count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


@contextmanager
def _progress(total: int) -> Iterator[Callable[[], None]]:
    from rich.progress import (  # noqa: PLC0415 - see pipeline.cli
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from pipeline.cli.render import console  # noqa: PLC0415

    columns = (
        TextColumn("moderating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("items", total=total)
        yield lambda: progress.advance(task)
