"""Console output that hostile text cannot drive: no markup, no control characters."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from pipeline.log import printable
from pipeline.summary import OUTCOMES, RunSummary

console = Console(stderr=True, highlight=False)


def safe(text: str) -> Text:
    """User-controlled text as plain rich Text: `[bold]` stays literal, \\x1b is escaped."""
    return Text(printable(text))


def summary_table(summary: RunSummary, title: str) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("items", str(summary.items))
    for outcome in OUTCOMES:
        table.add_row(f"  {outcome}", str(summary.outcomes.get(outcome, 0)))
    table.add_row("findings (violations)", f"{summary.findings} ({summary.violations})")
    table.add_row("ungrounded quotes", f"{summary.ungrounded_quotes} of {summary.quotes}")
    hallucinated = sum(summary.hallucinated_rules.values())
    names = ", ".join(sorted(summary.hallucinated_rules))
    table.add_row("hallucinated rules", safe(f"{hallucinated} ({names})" if names else "0"))
    table.add_row("errors", safe(", ".join(f"{k}: {v}" for k, v in summary.errors.items()) or "0"))
    table.add_row("items without logprob signal", str(summary.no_signal))
    spread = summary.confidence_spread()
    if spread is None:
        table.add_row("P(true) on violations", "too few to say")
    else:
        table.add_row(
            "P(true) on violations",
            f"min {spread['min']:.3f}  q1 {spread['q1']:.3f}  median {spread['median']:.3f}  "
            f"q3 {spread['q3']:.3f}",
        )
        table.add_row("  share at p >= 0.999", f"{spread['share_at_0.999']:.0%}")
    table.add_row(
        "tokens (prompt / cached / completion)",
        f"{summary.prompt_tokens} / {summary.cached_tokens} / {summary.completion_tokens}",
    )
    table.add_row("HTTP calls", str(summary.calls))
    return table
