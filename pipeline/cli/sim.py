"""`quoteguard sim serve` (the simulated model over HTTP) and `quoteguard sim golden`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="sim", help="The simulated OpenAI-compatible model.")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    seed: Annotated[int, typer.Option(help="Seed of every random choice of the model.")] = 0,
    hallucination_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of findings '+hallucinating' corrupts."),
    ] = 0.3,
    rate_limit: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share answered 429.")] = 0.0,
    server_error: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share answered 500.")
    ] = 0.0,
    timeout: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share that stall --timeout-s first.")
    ] = 0.0,
    malformed: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share with invalid JSON content.")
    ] = 0.0,
    truncated: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share cut short (finish_reason length).")
    ] = 0.0,
    script: Annotated[
        list[str] | None,
        typer.Option(help="Fault forced on the first requests, in order (repeatable)."),
    ] = None,
    # A second, like providers' shorter waits; tests use the config's 50 ms instead.
    retry_after_ms: Annotated[int, typer.Option(min=0, help="retry-after-ms on 429s.")] = 1000,
    timeout_s: Annotated[float, typer.Option(min=0.0, help="How long a stall lasts.")] = 30.0,
    latency_ms: Annotated[float, typer.Option(min=0.0, help="Mean added latency.")] = 0.0,
    latency_dist: Annotated[str, typer.Option(help="fixed or lognormal.")] = "fixed",
) -> None:
    """Serve the simulated model: POST /v1/chat/completions, GET /v1/models, GET /sim/stats.

    Pick a behaviour with the model name: sim-calibrated, sim-collapsed, and either with
    '+hallucinating'. Point any OpenAI client at http://HOST:PORT/v1 with any API key.
    """
    # Heavy imports inside the command (see pipeline.cli): uvicorn loads only to serve.
    from pydantic import ValidationError  # noqa: PLC0415

    from pipeline.sim.config import FaultConfig, LatencyConfig, SimConfig  # noqa: PLC0415
    from pipeline.sim.server import serve as run  # noqa: PLC0415

    try:
        config = SimConfig(
            seed=seed,
            hallucination_rate=hallucination_rate,
            faults=FaultConfig(
                rate_limit=rate_limit,
                server_error=server_error,
                timeout=timeout,
                malformed=malformed,
                truncated=truncated,
                script=tuple(FaultConfig.model_validate({"script": script or []}).script),
                retry_after_ms=retry_after_ms,
                timeout_s=timeout_s,
            ),
            latency=LatencyConfig.model_validate(
                {"mean_ms": latency_ms, "distribution": latency_dist}
            ),
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"simulated model on http://{host}:{port}/v1 (seed {seed})")
    run(config, host=host, port=port)


@app.command()
def golden(
    n: Annotated[int, typer.Option("--n", min=1, help="How many items.")] = 600,
    seed: Annotated[int, typer.Option(help="Same seed, same set.")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")] = Path(
        "golden.jsonl"
    ),
    policies: Annotated[
        Path | None, typer.Option("--policies", help="Policy files directory.")
    ] = None,
) -> None:
    """Write a synthetic labelled set built from the policies' own examples.

    One line per item: {"id", "text", "meta": {"kind", ...}, "label": {"violation",
    "rule_ids", "quotes"}}.
    """
    from pipeline.errors import QuoteguardError  # noqa: PLC0415 - see pipeline.cli
    from pipeline.policies import load_policies  # noqa: PLC0415
    from pipeline.sim.golden import generate_from_policies, write_jsonl  # noqa: PLC0415

    try:
        policy_set = load_policies(policies)
    except QuoteguardError as exc:
        raise typer.BadParameter(str(exc), param_hint="--policies") from exc
    count = write_jsonl(generate_from_policies(policy_set, n, seed), out)
    typer.echo(f"wrote {count} items to {out} (policy set {policy_set.version}, seed {seed})")
