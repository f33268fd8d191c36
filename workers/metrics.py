"""Prometheus metrics of a worker, served on /metrics by the worker process itself.

Counters and histograms are per process and summed by Prometheus across workers. Queue
depth and review queue size are read from Redis at scrape time (every worker reports the
same shared value: aggregate them with max(), not sum()).

With the thread or gevent pool (the default) tasks run in the worker's own process, so one
registry sees everything. A prefork pool would count in child processes this server cannot
see; use prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR) there.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
import structlog
from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from pipeline.models import Decision
from workers.collapse_window import current_states
from workers.transport import UNDECODABLE

log = structlog.get_logger("quoteguard.workers")

ITEMS = Counter("quoteguard_items", "Decisions published, by outcome.", ["outcome"])
DUPLICATES = Counter(
    "quoteguard_duplicate_decisions", "Decisions dropped because their key was published."
)
CHANGED_RESUBMISSIONS = Counter(
    "quoteguard_resubmissions_with_other_text",
    "Items whose id was decided before for another text: answered by the first Decision "
    "(edited content needs a new id).",
)
ITEM_LATENCY = Histogram(
    "quoteguard_item_latency_seconds",
    "Pipeline time per decided item; model calls, re-asks and SDK retries dominate it.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
LLM_CALLS = Counter("quoteguard_llm_calls", "HTTP calls to the model (retries, re-asks too).")
LLM_TOKENS = Counter("quoteguard_llm_tokens", "Tokens used, by kind.", ["kind"])
LLM_ERRORS = Counter(
    "quoteguard_llm_errors", "Model failures, by kind (transient ones are retried).", ["kind"]
)
RETRIES = Counter("quoteguard_task_retries", "Task retries scheduled, by reason.", ["reason"])
RATE_WAIT = Histogram(
    "quoteguard_rate_limit_wait_seconds",
    "Time a request waited for the shared rate limit (only requests that waited).",
    ["model"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
)
WEBHOOKS = Counter("quoteguard_webhook_deliveries", "Webhook attempts, by result.", ["result"])


def observe_decision(decision: Decision) -> None:
    """Count a newly published Decision (duplicates are counted apart, not here)."""
    ITEMS.labels(decision.outcome).inc()
    if decision.usage.calls:
        ITEM_LATENCY.observe(decision.latency_ms / 1000)
        LLM_CALLS.inc(decision.usage.calls)
        LLM_TOKENS.labels("prompt").inc(decision.usage.prompt_tokens)
        LLM_TOKENS.labels("completion").inc(decision.usage.completion_tokens)
    for error in decision.errors:
        LLM_ERRORS.labels(error.kind).inc()


def observe_rate_wait(model: str, seconds: float) -> None:
    RATE_WAIT.labels(model).observe(seconds)


class QueueCollector(Collector):
    """Reads the shared queue sizes from Redis on each scrape: the broker's own keys from
    the broker (which may be another Redis), ours from ours."""

    def __init__(
        self, client: redis.Redis[str], broker: redis.Redis[bytes], queue: str, namespace: str
    ) -> None:
        self.redis = client
        self.broker = broker
        self.queue = queue
        self.review_queue = f"{namespace}:review:queue"
        self.review_leases = f"{namespace}:review:leases"
        self.namespace = namespace

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            with self.broker.pipeline(transaction=False) as pipe:
                pipe.llen(self.queue)
                pipe.llen(UNDECODABLE)
                depth, undeliverable = pipe.execute()
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.review_queue)
                pipe.zcard(self.review_leases)
                queued, claimed = pipe.execute()
            collapse = current_states(self.redis, self.namespace)
        except redis.RedisError as exc:
            # A scrape must not fail because Redis blinked; the gap in the series says it.
            log.warning("metrics_redis_unavailable", error=type(exc).__name__)
            return
        yield GaugeMetricFamily(
            "quoteguard_queue_depth",
            "Items waiting in the broker queue (not yet taken by a worker).",
            value=depth,
        )
        review = GaugeMetricFamily(
            "quoteguard_review_queue_size", "Review entries, by state.", labels=["state"]
        )
        review.add_metric(["queued"], queued)
        review.add_metric(["claimed"], claimed)
        yield review
        yield GaugeMetricFamily(
            "quoteguard_undeliverable_messages",
            f"Broker messages no worker could read, kept in the Redis list {UNDECODABLE}; "
            "alert on any.",
            value=undeliverable,
        )
        collapsed = GaugeMetricFamily(
            "quoteguard_signal_collapsed",
            "1 while the fleet's live window finds a served model version's logprobs "
            "collapsed (routing does not trust them), else 0.",
            labels=["model_version"],
        )
        for version, is_collapsed in sorted(collapse.items()):
            collapsed.add_metric([version], 1 if is_collapsed else 0)
        yield collapsed


_collector: QueueCollector | None = None


def serve(
    port: int,
    client: redis.Redis[str],
    broker: redis.Redis[bytes],
    queue: str,
    namespace: str,
    *,
    host: str = "127.0.0.1",
) -> bool:
    """Start /metrics on `host:port` (once per process); False if the port is taken."""
    global _collector  # noqa: PLW0603 - one collector per process, like the registry itself
    if _collector is None:
        _collector = QueueCollector(client, broker, queue, namespace)
        REGISTRY.register(_collector)
    try:
        start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics_port_unavailable", host=host, port=port, error=str(exc))
        return False
    log.info("metrics_serving", host=host, port=port)
    return True
