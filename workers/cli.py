"""Commands for the workers: `quoteguard worker | submit | results | review ...`.

As every command module (see `pipeline.cli`): heavy modules (pydantic, redis, Celery, the
pipeline) are imported inside the commands, so `quoteguard --help` does not load them.

`register(main_app)` adds them to the main `quoteguard` CLI (through the
`quoteguard.commands` entry-point group, so `pipeline` never imports `workers`); `app` is
the same commands as a typer app of their own (`python -m workers.cli`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from pydantic import BaseModel

    from workers.review_queue import ReviewQueue

Pool = Literal["threads", "gevent", "prefork"]

#: The pool `quoteguard worker` uses; see benchmarks/README.md ("Workers") for the figures.
DEFAULT_POOL: Pool = "threads"
#: LLM calls are I/O: a worker spends nearly all of a task waiting on the provider.
DEFAULT_CONCURRENCY = 64

# Plain help, as the main app's (see pipeline.cli): typer's rich help costs a start-up.
app = typer.Typer(help="Celery workers on Redis.", no_args_is_help=True, rich_markup_mode=None)
review_app = typer.Typer(
    help="The human review queue (for ops; reviewers use the UI).", rich_markup_mode=None
)


def register(main: typer.Typer) -> None:
    main.command("worker")(worker)
    main.command("submit")(submit)
    main.command("results")(results)
    main.command("queue")(queue)
    main.add_typer(review_app, name="review")


def _configure_logging() -> None:
    """Logs to stderr as JSON, so stdout carries only the command's output."""
    from pipeline.config import load_settings  # noqa: PLC0415 - see the module docstring
    from pipeline.log import configure_logging  # noqa: PLC0415

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format, secrets=[settings.api_key])


def worker(
    pool: Annotated[str, typer.Option("--pool", "-P", help="threads | gevent | prefork")] = (
        DEFAULT_POOL
    ),
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = DEFAULT_CONCURRENCY,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "info",
    hostname: Annotated[str | None, typer.Option("--hostname", "-n")] = None,
) -> None:
    """Start a worker: `celery -A workers.app worker` with defaults for I/O-bound LLM calls."""
    if pool not in ("threads", "gevent", "prefork"):
        raise typer.BadParameter("pool must be threads, gevent or prefork", param_hint="--pool")
    from workers.settings import worker_settings  # noqa: PLC0415 - see the module docstring

    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker"]
    argv += ["-P", pool, "-c", str(concurrency), "-Q", worker_settings().queue, "-l", loglevel]
    if hostname:
        argv += ["-n", hostname]
    # exec, not a child: signals (TERM for warm shutdown) reach Celery directly. gevent must
    # patch before anything else is imported, which Celery's own entry point does.
    os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter, fixed arguments


def submit(
    path: Annotated[Path, typer.Argument(help="JSONL of items, one {id, text, meta} per line.")],
) -> None:
    """Queue every line of a JSONL file; bad lines become error Decisions, never vanish."""
    _configure_logging()
    # Imported here: they load Celery and the pipeline, which the other commands do not need.
    from pipeline.inputs import InputProblem, read_items  # noqa: PLC0415
    from pipeline.log import printable  # noqa: PLC0415
    from workers import send_payloads  # noqa: PLC0415
    from workers.service import PROBLEM_FIELD  # noqa: PLC0415
    from workers.settings import worker_settings  # noqa: PLC0415

    counts = {"items": 0, "refused": 0}

    def payloads() -> Iterator[dict[str, object]]:
        for entry in read_items(path):
            if isinstance(entry, InputProblem):
                counts["refused"] += 1
                typer.echo(printable(f"{path}:{entry}"), err=True)
                # The worker turns this into an error Decision that names the problem.
                yield {"id": entry.item_id, PROBLEM_FIELD: str(entry)}  # as the CLI says it
            else:
                counts["items"] += 1
                yield entry.model_dump(mode="json")

    queue = worker_settings().queue
    try:
        sent = send_payloads(payloads())
    except Exception as exc:
        # The line being sent when the broker failed is not counted as queued.
        queued = counts["items"] + counts["refused"] - 1
        typer.echo(
            printable(f"stopped after queueing {max(queued, 0)} lines on {queue}: {exc}"),
            err=True,
        )
        raise typer.Exit(1) from exc
    typer.echo(
        f"queued {sent} lines: {counts['items']} items, {counts['refused']} refused "
        f"(input problems above; each becomes an error Decision naming it) on {queue}"
    )


def results(
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Wait for new Decisions.")] = False,
    after: Annotated[
        str, typer.Option("--after", help="Stream id to start after; 0 = from the beginning.")
    ] = "0",
    count: Annotated[int, typer.Option("--count", "-n", min=1)] = 100,
) -> None:
    """Print Decisions from the stream as JSON lines (with --follow, forever)."""
    from workers.results import Results  # noqa: PLC0415 - see the module docstring
    from workers.settings import redis_client, worker_settings  # noqa: PLC0415

    _configure_logging()
    settings = worker_settings()
    stream = Results(redis_client(settings.redis_url), settings.namespace)
    if follow:
        # Like `tail -f`: without --after, only what arrives from now on.
        for entry in stream.follow("$" if after == "0" else after):
            _print_entry(entry.stream_id, entry.decision.model_dump_json())
        return
    for entry in stream.read(after, count=count):
        _print_entry(entry.stream_id, entry.decision.model_dump_json())


#: Characters of each set-aside message `queue --undeliverable` shows.
UNDELIVERABLE_HEAD = 500


def queue(
    undeliverable: Annotated[
        bool, typer.Option("--undeliverable", help="Also print the set-aside messages.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
) -> None:
    """Where the broker's messages are: waiting, in flight, unacked, set aside (JSON)."""
    _configure_logging()
    # Imported here: the transport loads kombu, which the other commands do not need.
    from workers.settings import broker_client, worker_settings  # noqa: PLC0415
    from workers.transport import INFLIGHT_REGISTRY, UNDECODABLE  # noqa: PLC0415

    settings = worker_settings()
    broker = broker_client(settings.broker)
    lists = broker.hkeys(INFLIGHT_REGISTRY)
    with broker.pipeline(transaction=False) as pipe:
        pipe.llen(settings.queue)
        pipe.hlen("unacked")
        pipe.llen(UNDECODABLE)
        for key in lists:
            pipe.llen(key)
        waiting, unacked, set_aside, *in_flight = pipe.execute()
    status = {
        "queue": settings.queue,
        "waiting": waiting,
        "in_flight": sum(in_flight),
        "in_flight_lists": len(lists),
        "unacked_all_queues": unacked,
        "undeliverable": set_aside,
    }
    typer.echo(json.dumps(status))
    if undeliverable:
        for raw in broker.lrange(UNDECODABLE, 0, limit - 1):
            # Bytes made text with escapes, ASCII-escaped JSON, cut short: nobody could read
            # it as a message, so it may be anything, invalid UTF-8 and hostile included.
            text = raw.decode("utf-8", errors="backslashreplace")
            typer.echo(json.dumps({"bytes": len(raw), "head": text[:UNDELIVERABLE_HEAD]}))


def _emit(model: BaseModel) -> None:
    # ASCII-escaped JSON: reviewed content is hostile, and pydantic's JSON leaves bidi
    # overrides and other format characters raw for the terminal to act on.
    typer.echo(json.dumps(model.model_dump(mode="json")))


def _print_entry(stream_id: str, decision_json: str) -> None:
    # JSON (ASCII-escaped) so hostile content cannot drive the terminal.
    typer.echo(json.dumps({"stream_id": stream_id, "decision": json.loads(decision_json)}))


# ----------------------------------------------------------------------------- review


def _queue() -> ReviewQueue:
    from workers.review_queue import ReviewQueue  # noqa: PLC0415 - see the module docstring
    from workers.settings import redis_client, worker_settings  # noqa: PLC0415

    _configure_logging()
    settings = worker_settings()
    return ReviewQueue(
        redis_client(settings.redis_url), settings.namespace, lease_s=settings.review_lease_s
    )


@review_app.command("list")
def review_list(limit: Annotated[int, typer.Option("--limit", min=1)] = 20) -> None:
    """Queued entries in claim order, and the queue's size."""
    queue = _queue()
    size = queue.size()
    typer.echo(f"queued={size.queued} claimed={size.claimed}", err=True)
    for entry in queue.pending(limit=limit):
        typer.echo(
            json.dumps(
                {
                    "key": entry.key,
                    "priority": entry.priority,
                    "outcome": entry.decision.outcome,
                    "reasons": entry.decision.reasons,
                    "enqueued_at": entry.enqueued_at.isoformat(),
                    "claims": entry.claims,
                }
            )
        )


@review_app.command("claim")
def review_claim(
    reviewer: Annotated[str, typer.Option("--reviewer", "-r", help="Who is claiming.")],
    key: Annotated[str | None, typer.Option("--key", help="A specific entry.")] = None,
    lease_s: Annotated[int | None, typer.Option("--lease", min=1)] = None,
) -> None:
    """Claim the most urgent entry (or --key); prints the entry and its lease token."""
    queue = _queue()
    claim = queue.claim(reviewer, key=key, lease_s=lease_s)
    if claim is None:
        typer.echo("nothing to claim", err=True)
        raise typer.Exit(1)
    _emit(claim)


@review_app.command("resolve")
def review_resolve(
    key: Annotated[str, typer.Argument()],
    token: Annotated[str, typer.Option("--token", help="From `review claim`.")],
    violation: Annotated[bool, typer.Option("--violation/--no-violation")],
    rule: Annotated[list[str] | None, typer.Option("--rule", help="Rule id; repeatable.")] = None,
    note: Annotated[str, typer.Option("--note")] = "",
) -> None:
    """Record the label for a claimed entry (once)."""
    from workers.review_queue import ReviewError  # noqa: PLC0415 - see the module docstring

    queue = _queue()
    try:
        resolution = queue.resolve(key, token, violation=violation, rule_ids=rule or [], note=note)
    except (ReviewError, ValueError) as exc:
        typer.echo(f"not resolved: {exc}", err=True)
        raise typer.Exit(1) from exc
    _emit(resolution)


@review_app.command("release")
def review_release(
    key: Annotated[str, typer.Argument()],
    token: Annotated[str, typer.Option("--token")],
) -> None:
    """Give a claimed entry back to the queue unresolved."""
    from workers.review_queue import ReviewError  # noqa: PLC0415 - see the module docstring

    queue = _queue()
    try:
        queue.release(key, token)
    except ReviewError as exc:
        typer.echo(f"not released: {exc}", err=True)
        raise typer.Exit(1) from exc


@review_app.command("export")
def review_export(
    after: Annotated[str, typer.Option("--after", help="Resume after this stream id.")] = "-",
    golden: Annotated[
        Path | None,
        typer.Option(
            "--golden", dir_okay=False, help="Write a golden set (for eval / calibrate) here."
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Only items this model flagged (--golden).")
    ] = None,
) -> None:
    """Every resolution with its Decision and content, as JSON lines (labelled data).

    With --golden, the reviewers' labels as a golden set instead, one item per content item.
    """
    queue = _queue()
    if golden is None:
        for example in queue.labelled(after):
            _emit(example)
        return
    from pipeline.log import printable  # noqa: PLC0415
    from workers.review_export import golden_from_reviews  # noqa: PLC0415

    export = golden_from_reviews(queue.labelled(after), model)
    with golden.open("w", encoding="utf-8") as out:
        for item in export.items:
            out.write(item.model_dump_json() + "\n")
    violations = sum(item.label.violation for item in export.items)
    typer.echo(
        f"wrote {len(export.items)} items ({violations} violations) to {golden}"
        + (f" for model {model}" if model else ""),
        err=True,
    )
    for item_id, why in export.left_out:
        typer.echo(printable(f"left out {item_id}: {why}"), err=True)


@review_app.command("add-user")
def review_add_user(
    name: Annotated[str, typer.Argument(help="Sign-in name.")],
    role: Annotated[str, typer.Option("--role", help="reviewer | admin")] = "reviewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a reviewer account (or set its password and role); asks for the password."""
    from pipeline.errors import ConfigError  # noqa: PLC0415
    from workers.review_web.users import UserStore  # noqa: PLC0415
    from workers.settings import redis_client, worker_settings  # noqa: PLC0415

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = worker_settings()
    users = UserStore(redis_client(settings.redis_url), settings.namespace)
    try:
        created = users.add(name, password, role)  # type: ignore[arg-type]  # checked in add
    except ConfigError as exc:
        typer.echo(f"not added: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"{'added' if created else 'updated'} {name} ({role})", err=True)


@review_app.command("serve")
def review_serve(
    host: Annotated[str | None, typer.Option("--host", help="Default 127.0.0.1.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Default 8090.")] = None,
    policies: Annotated[
        Path | None, typer.Option("--policies", help="Policy folder (rule texts shown).")
    ] = None,
) -> None:
    """The reviewers' web app on the review queue (put a TLS proxy in front of it)."""
    _configure_logging()
    # Imported here: the web stack is only needed by this command.
    import uvicorn  # noqa: PLC0415

    from pipeline.config import load_settings  # noqa: PLC0415
    from pipeline.policies import load_policies  # noqa: PLC0415
    from workers.review_queue import ReviewQueue  # noqa: PLC0415
    from workers.review_web.app import create_app, session_secret  # noqa: PLC0415
    from workers.review_web.config import ReviewWebSettings  # noqa: PLC0415
    from workers.review_web.users import UserStore  # noqa: PLC0415
    from workers.settings import redis_client, worker_settings  # noqa: PLC0415

    web = ReviewWebSettings()
    settings = worker_settings()
    client = redis_client(settings.redis_url)
    queue = ReviewQueue(client, settings.namespace, lease_s=web.lease_s)
    app = create_app(
        queue,
        UserStore(client, settings.namespace),
        load_policies(policies or load_settings().policies_dir),
        web,
        session_secret(client, settings.namespace, web),
    )
    # log_config=None: uvicorn's lines go through our logging (escaped, redacted), not its own.
    uvicorn.run(
        app, host=host or web.host, port=port or web.port, log_level="warning", log_config=None
    )


register(app)  # `python -m workers.cli` has the same commands as `quoteguard`

if __name__ == "__main__":
    app()
