"""Worker start-up: logging, the visibility-timeout check and the /metrics server.

Connected to Celery's signals, so `celery -A workers.app worker` and `quoteguard worker`
start the same way.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery.signals import setup_logging, worker_init, worker_ready
from pydantic import ValidationError

from pipeline.config import Settings as PipelineSettings
from pipeline.config import load_settings
from pipeline.errors import QuoteguardError
from pipeline.log import configure_logging
from workers import metrics, service
from workers.settings import (
    broker_client,
    check_visibility_timeout,
    redis_client,
    worker_settings,
)

log = structlog.get_logger("quoteguard.workers")


@worker_init.connect  # type: ignore[untyped-decorator]
def _on_worker_init(sender: Any = None, **_: Any) -> None:
    # Celery logs and ignores exceptions from signal handlers; only SystemExit stops the
    # worker. A worker with a broken configuration must not start taking items.
    try:
        _start(sender)
    except (QuoteguardError, ValidationError) as exc:
        log.error("worker_config_invalid", error=str(exc))
        raise SystemExit(f"quoteguard worker: {exc}") from exc


@setup_logging.connect  # type: ignore[untyped-decorator]
def _on_setup_logging(**_: Any) -> None:
    """Celery's own logging set-up is skipped (a receiver exists): its lines, kombu's and
    the SDKs' go through the project's redaction and escaping like every other line. Nor
    does Celery then wrap stderr in a logger at WARNING, which labelled info events so."""
    try:
        _configure(load_settings())
    except (QuoteguardError, ValidationError):
        configure_logging()  # worker_init reports the configuration error and stops


def _configure(pipeline: PipelineSettings) -> None:
    settings = worker_settings()
    configure_logging(
        pipeline.log_level,
        pipeline.log_format,
        secrets=[pipeline.api_key, settings.webhook_secret],
    )


def _start(sender: Any) -> None:
    pipeline = load_settings()
    _configure(pipeline)
    settings = worker_settings()
    # Fail at start-up, not by duplicate work under load.
    check_visibility_timeout(settings, pipeline)
    # Policies, model client, Redis client: built now, so a bad policy file stops the worker
    # here instead of failing (and retrying) every item it takes.
    service.runtime()
    pool = str(getattr(sender, "pool_cls", ""))
    if "prefork" in pool and settings.metrics_port:
        log.warning(
            "metrics_prefork_pool",
            hint="task metrics are counted in child processes; use -P threads or gevent, "
            "or prometheus_client multiprocess mode",
        )
    log.info(
        "worker_starting",
        queue=settings.queue,
        model=pipeline.model,
        visibility_timeout_s=settings.visibility_timeout_s,
        max_retries=settings.max_retries,
    )


@worker_ready.connect  # type: ignore[untyped-decorator]
def _on_worker_ready(**_: Any) -> None:
    settings = worker_settings()
    if settings.metrics_port:
        client = redis_client(settings.redis_url)
        broker = broker_client(settings.broker)
        metrics.serve(
            settings.metrics_port,
            client,
            broker,
            settings.queue,
            settings.namespace,
            host=settings.metrics_host,
        )
