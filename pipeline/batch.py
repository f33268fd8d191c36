"""Runs many items through a Moderator with bounded concurrency, one Decision per entry.

LLM calls are I/O bound, so threads are the right tool: the pipeline stages between calls
are short and the SDK releases the GIL while it waits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from pipeline.errors import InputError
from pipeline.inputs import InputProblem
from pipeline.models import ContentItem, Decision
from pipeline.runner import Moderator


def run_batch(
    moderator: Moderator,
    entries: Iterable[ContentItem | InputProblem],
    on_decision: Callable[[Decision], None],
    concurrency: int = 8,
) -> int:
    """Moderates every entry, calling `on_decision` (in this thread) as each one finishes.

    At most `concurrency` items are in flight and at most twice that are read ahead, so a
    file of millions of lines streams through in constant memory. Returns the count.
    """
    count = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="moderate") as pool:
        pending: set[Future[Decision]] = set()
        for entry in entries:
            if isinstance(entry, InputProblem):
                on_decision(
                    moderator.rejected(entry.item_id, InputError(entry.item_id, str(entry)))
                )
                count += 1
                continue
            pending.add(pool.submit(moderator.moderate, entry))
            if len(pending) >= concurrency * 2:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                count += _deliver(done, on_decision)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            count += _deliver(done, on_decision)
    return count


def _deliver(done: set[Future[Decision]], on_decision: Callable[[Decision], None]) -> int:
    for future in done:
        on_decision(future.result())
    return len(done)
