"""Benchmark: the review item page for 100 KB of content with 50 highlights, against escaping
that content once (the least any safe page of it costs).

Run by hand from the repository root:

    .venv/bin/python benchmarks/bench_review_page.py

Content: comments of SemEval toxic_spans (train) joined to 100,000 characters; highlights:
the first 50 human-marked spans in it, as grounded exact quotes (plus, to show the weaker
style, every fifth one as a fuzzy match). Timed side by side in one run, best of REPEATS:

- escape: `markupsafe.escape(text)`, what Jinja's autoescape does to the content once;
- segments: cutting the content at highlight boundaries and invisible characters;
- page: the whole item page (view model + template), as the app renders it per request.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import markupsafe

from pipeline.models import ContentItem, Decision
from pipeline.policies import load_policies
from workers.review_queue import ReviewEntry
from workers.review_web.app import templates
from workers.review_web.highlight import Highlight, invisible_pattern, segments
from workers.review_web.users import User
from workers.review_web.views import item_view

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
SIZE = 100_000
HIGHLIGHTS = 50
REPEATS = 30


def content() -> tuple[str, list[tuple[int, int]]]:
    """Train comments joined to SIZE chars, and the human-marked spans that fall inside."""
    text, spans = "", []
    with (DATA / "toxic_spans" / "tsd_train.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            offsets = json.loads(row["spans"])
            base = len(text)
            runs: list[list[int]] = []
            for i in offsets:
                if runs and i == runs[-1][1] + 1:
                    runs[-1][1] = i
                else:
                    runs.append([i, i])
            spans += [(base + a, base + b + 1) for a, b in runs if b + 1 - a >= 3]
            text += row["text"] + "\n\n"
            if len(text) >= SIZE:
                break
    text = text[:SIZE]
    return text, [(a, b) for a, b in spans if b <= SIZE][:HIGHLIGHTS]


def entry(text: str, spans: list[tuple[int, int]]) -> ReviewEntry:
    findings = [
        {
            "rule_id": "HARASSMENT.1",
            "verdict": True,
            "explanation": "insult",
            "quotes": [
                {
                    "quote": text[a:b],
                    "match": {
                        "start": a,
                        "end": b,
                        "score": 100.0 if i % 5 else 92.0,
                        "method": "exact" if i % 5 else "fuzzy",
                    },
                }
                for i, (a, b) in enumerate(spans)
            ],
            "citation": {"rule_id": "HARASSMENT.1", "exists": True},
            "p_true": 0.93,
        }
    ]
    decision = Decision.model_validate(
        {
            "item_id": "bench",
            "outcome": "human_review",
            "findings": findings,
            "model": "m",
            "policy_version": "pv",
            "reasons": ["no_calibration_profile"],
        }
    )
    return ReviewEntry(
        key=decision.key,
        decision=decision,
        item=ContentItem(id="bench", text=text),
        priority=50,
        state="claimed",
        enqueued_at=decision.decided_at,
        claims=1,
        reviewer="rita",
    )


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    text, spans = content()
    review = entry(text, spans)
    policies = load_policies()
    template = templates().env.get_template("item.html")
    user = User(name="rita", role="reviewer")
    highlights = [Highlight(a, b, "strong", 0, i) for i, (a, b) in enumerate(spans)]
    invisible_pattern()  # built once per process, at the first page

    def page() -> str:
        return template.render(
            request=None,
            csrf="t",
            nonce="n",
            user=user,
            flash=None,
            view=item_view(review, policies),
            rules=policies.rules,
            heartbeat_ms=30000,
        )

    html = page()
    assert html.count('<mark class="q-') >= len(spans)
    escape = best(lambda: markupsafe.escape(text))
    cut = best(lambda: segments(text, highlights))
    full = best(page)
    print(f"content {len(text):,} chars, {len(spans)} highlights, page {len(html):,} bytes")
    print(f"python {platform.python_version()}, markupsafe {version('markupsafe')}")
    print(f"{'':10} {'ms':>8} {'x escape':>9}")
    for name, seconds in (("escape", escape), ("segments", cut), ("page", full)):
        print(f"{name:10} {seconds * 1000:8.3f} {seconds / escape:9.1f}")


if __name__ == "__main__":
    main()
