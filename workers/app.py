"""The Celery app: `celery -A workers.app worker`. Configuration only; tasks in workers.tasks."""

from __future__ import annotations

from celery import Celery

from workers.settings import celery_transport_options, worker_settings

settings = worker_settings()
app = Celery("quoteguard", broker=settings.broker, include=["workers.tasks", "workers.lifecycle"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=settings.queue,
    task_acks_late=True,  # ack after the Decision is published, so a lost worker loses nothing
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,  # a dead worker strands at most `concurrency` items
    broker_transport="workers.transport:Transport",  # kombu's Redis, one loss window closed
    broker_transport_options=celery_transport_options(settings),
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # a Redis restart is waited out, not fatal
    task_ignore_result=True,  # Decisions go to the stream; no result backend
    worker_send_task_events=True,  # Flower sees tasks without `celery control enable_events`
    task_send_sent_event=True,
)
