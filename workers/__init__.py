"""quoteguard workers: the pipeline behind Celery on Redis, losing nothing.

    from workers import submit
    task_id = submit({"id": "42", "text": "..."})     # or a pipeline.models.ContentItem

Decisions arrive on the Redis stream `<namespace>:decisions` (see `workers.results.Results`)
and, if configured, by signed webhook; human_review and error Decisions also wait in the
review queue (`workers.review_queue.ReviewQueue`). Producers that do not import this package
send the task by name: `quoteguard.moderate` with one argument, the item as a JSON object,
on the queue named by QUOTEGUARD_NAMESPACE (default "quoteguard").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on use: `quoteguard --help` loads this package (see pipeline.cli)
    from pipeline.models import ContentItem

__all__ = ["send_payloads", "submit", "submit_many"]


def submit(item: ContentItem | Mapping[str, Any], *, countdown: float | None = None) -> str:
    """Queue one item for moderation; returns the Celery task id."""
    # Imported on use: `import workers.review_queue` (a review UI) must not load Celery, the
    # pipeline's LLM client and the app's settings.
    from pipeline.models import ContentItem  # noqa: PLC0415
    from workers.tasks import moderate  # noqa: PLC0415

    content = item if isinstance(item, ContentItem) else ContentItem.model_validate(item)
    result = moderate.apply_async(args=[content.model_dump(mode="json")], countdown=countdown)
    return str(result.id)


def submit_many(items: Iterable[ContentItem | Mapping[str, Any]]) -> int:
    """Queue many items over one broker connection; returns how many were sent."""
    from pipeline.models import ContentItem  # noqa: PLC0415 - see submit()

    return send_payloads(
        (item if isinstance(item, ContentItem) else ContentItem.model_validate(item)).model_dump(
            mode="json"
        )
        for item in items
    )


def send_payloads(payloads: Iterable[Mapping[str, Any]]) -> int:
    """Queue task payloads as they are (no validation: the worker judges them)."""
    from workers.app import app  # noqa: PLC0415 - see submit()
    from workers.tasks import moderate  # noqa: PLC0415

    sent = 0
    with app.producer_or_acquire() as producer:
        for payload in payloads:
            moderate.apply_async(args=[dict(payload)], producer=producer)
            sent += 1
    return sent
