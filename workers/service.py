"""What a moderation task does, apart from Celery: decide an item once, publish it once.

Kept out of `workers.tasks` so the tasks stay thin (deserialise, call `handle`, turn its
answer into a Celery retry) and so this logic can be read and tested without a broker.

One process builds one `Runtime` (Redis client, shared rate gate, Moderator) on first use and
shares it between its threads or greenlets; the Moderator is thread-safe.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass
from typing import Any

import redis
import structlog

from pipeline.config import Settings as PipelineSettings
from pipeline.config import load_settings
from pipeline.errors import InputError, LLMTransientError
from pipeline.inputs import (
    RAW_PAYLOAD_CHARS,
    InputProblem,
    as_unicode,
    parse_payload,
    safe_dump,
    stand_in_id,
)
from pipeline.models import ContentItem, Decision
from pipeline.runner import Moderator
from workers import metrics
from workers.collapse_window import RedisCollapseDetector
from workers.rate_limit import RedisRateGate
from workers.results import Published, Results
from workers.settings import WorkerSettings, redis_client, worker_settings

log = structlog.get_logger("quoteguard.workers")

#: A payload carrying this field is an input line that never became an item; the value
#: says what is wrong with it (set by `quoteguard submit`).
PROBLEM_FIELD = "_problem"


@dataclass(frozen=True)
class Runtime:
    settings: WorkerSettings
    redis: redis.Redis[str]
    moderator: Moderator
    results: Results


def build_runtime(settings: WorkerSettings, pipeline: PipelineSettings) -> Runtime:
    client = redis_client(settings.redis_url)
    gate = RedisRateGate(
        client,
        settings.namespace,
        settings.limit_for,
        max_wait_s=settings.rate_wait_max_s,
        window_ms=settings.rate_window_s * 1000,
        on_wait=metrics.observe_rate_wait,
    )
    results = Results(
        client,
        settings.namespace,
        dedupe_ttl_s=settings.dedupe_ttl_s,
        stream_maxlen=settings.stream_maxlen,
    )
    # One collapse window per model version for the whole fleet, not one per process.
    detector = RedisCollapseDetector(client, settings.namespace)
    moderator = Moderator.from_settings(pipeline, rate_gate=gate, detector=detector)
    return Runtime(settings=settings, redis=client, moderator=moderator, results=results)


_runtime: tuple[int, Runtime] | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """This process's runtime, built once from the environment.

    Keyed by pid: a prefork child must not share the parent's HTTP connections.
    """
    global _runtime  # noqa: PLW0603 - one per process
    with _runtime_lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = (os.getpid(), build_runtime(worker_settings(), load_settings()))
        return _runtime[1]


# ----------------------------------------------------------------------------- one item


@dataclass(frozen=True)
class RetryLater:
    """The provider is unavailable: run the task again after `countdown` seconds."""

    error: LLMTransientError
    countdown: float


@dataclass(frozen=True)
class Done:
    """The item's Decision is published (by this run or an earlier one)."""

    key: str
    published: Published
    #: The Decision JSON to send by webhook, when this run is responsible for sending it.
    webhook_body: str | None


def decision_key(moderator: Moderator, item_id: str) -> str:
    """`Decision.key` before the Decision exists: policy_version:model:item_id."""
    return f"{moderator.policy_version}:{moderator.model}:{item_id}"


def retry_countdown(
    retries: int, retry_after: float | None, *, base_s: float, cap_s: float
) -> float:
    """Exponential backoff with jitter, never sooner than the provider's Retry-After.

    Capped, because a retried task waits on a worker with its message unacked and must
    finish within the broker's visibility timeout.
    """
    backoff = base_s * 2.0**retries * random.uniform(0.5, 1.0)
    return min(cap_s, max(retry_after or 0.0, backoff))


def handle(
    rt: Runtime,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    task_id: str,
    retries: int,
) -> Done | RetryLater:
    """Decide the task's item unless its Decision exists; publish; say whether to retry."""
    item, rejected = parse_task(rt.moderator, args, kwargs)
    key = decision_key(rt.moderator, item.id)
    seen = rt.results.seen(key)
    if seen is not None:
        # Redelivered or resubmitted: no second model call, no second Decision. If this is
        # the very task that published (it died before finishing), it re-sends the webhook.
        log.info("decision_exists", key=key, same_task=seen.task_id == task_id)
        if seen.decided_other_text(item):
            # One Decision per (item id, policy version, model) by design; edited content
            # needs a new id. Said loudly, since the producer is probably wrong.
            log.warning("resubmitted_with_other_text", key=key, decided=seen.stream_id)
            metrics.CHANGED_RESUBMISSIONS.inc()
        body = rt.results.body(seen.stream_id) if seen.task_id == task_id else None
        return Done(key, seen, body)
    decision = rejected or _decide(rt, item, retries)
    if isinstance(decision, RetryLater):
        return decision
    published = rt.results.publish(decision, item, task_id)
    if published.created:
        metrics.observe_decision(decision)
        return Done(key, published, decision.model_dump_json())
    metrics.DUPLICATES.inc()
    return Done(key, published, None)


def record_failure(
    rt: Runtime, args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception, *, task_id: str
) -> str:
    """Publish an error Decision for a task that failed unexpectedly; returns its key."""
    item, _ = parse_task(rt.moderator, args, kwargs)
    decision = rt.moderator.failed(item, error)
    published = rt.results.publish(decision, item, task_id)
    if published.created:
        metrics.observe_decision(decision)
    return decision_key(rt.moderator, item.id)


def _decide(rt: Runtime, item: ContentItem, retries: int) -> Decision | RetryLater:
    try:
        return rt.moderator.attempt(item)
    except LLMTransientError as exc:
        metrics.LLM_ERRORS.labels(exc.kind).inc()
        if retries < rt.settings.max_retries:
            # No Decision carries this attempt's calls: count them now. The last attempt's
            # calls are in its error Decision, counted when it is published.
            metrics.LLM_CALLS.inc(exc.calls)
            countdown = retry_countdown(
                retries,
                exc.retry_after,
                base_s=rt.settings.retry_backoff_s,
                cap_s=rt.settings.retry_backoff_max_s,
            )
            log.warning(
                "item_retry_scheduled",
                item_id=item.id,
                retries=retries,
                countdown_s=round(countdown, 2),
                error=str(exc),
            )
            return RetryLater(exc, countdown)
        return rt.moderator.failed(item, exc)
    except Exception as exc:  # never dropped: a bug becomes an error Decision (logged)
        log.exception("internal_error", item_id=item.id)
        return rt.moderator.failed(item, exc)


def parse_task(
    moderator: Moderator, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[ContentItem, Decision | None]:
    """The item of a task however it was sent, or a stand-in and its error Decision.

    The task takes one argument, the item; a foreign producer may send none, several or
    keyword arguments. Whatever arrived is judged by the one input edge
    (`pipeline.inputs`), so the worker accepts and refuses exactly what the CLI does, and a
    malformed task still ends in the review queue with its raw content for the reviewer.
    """
    if len(args) == 1 and not kwargs:
        return parse_item(moderator, args[0])
    if not args and set(kwargs) == {"item"}:
        return parse_item(moderator, kwargs["item"])
    sent = {"args": list(args), "kwargs": kwargs}
    problem = InputProblem(
        None,
        stand_in_id(sent),
        f"the task takes one argument, the item; got {len(args)} positional and "
        f"{len(kwargs)} keyword arguments",
    )
    return _rejected(moderator, problem, sent)


def parse_item(moderator: Moderator, payload: Any) -> tuple[ContentItem, Decision | None]:
    """The item, or (for a payload that is not one) a stand-in and its error Decision."""
    if isinstance(payload, dict) and isinstance(payload.get(PROBLEM_FIELD), str):
        # A line `quoteguard submit` could not read: it names the problem itself.
        named = parse_payload({"id": payload.get("id"), "text": ""})
        item_id = named.item_id if isinstance(named, InputProblem) else named.id
        problem = InputProblem(None, item_id, as_unicode(payload[PROBLEM_FIELD]))
        return _rejected(moderator, problem, None)
    parsed = parse_payload(payload)
    if isinstance(parsed, ContentItem):
        return parsed, None
    return _rejected(moderator, parsed, payload)


def _rejected(
    moderator: Moderator, problem: InputProblem, raw: object
) -> tuple[ContentItem, Decision]:
    error = InputError(problem.item_id, problem.message)
    shown = "" if raw is None else safe_dump(raw)[:RAW_PAYLOAD_CHARS]
    return ContentItem(id=problem.item_id, text=shown), moderator.rejected(problem.item_id, error)
