"""Cost of judging a broker message before delivery: `workers.transport.decode` vs json.loads.

Run by hand from the repository root, with Redis on 127.0.0.1:6379 (it is not a test; it
takes a few seconds and uses Redis db 8, a queue of its own, deleted at once):

    .venv/bin/python benchmarks/bench_decode.py [--chars 2000] [--rounds 5]

One real task message (Celery's own envelope, an item of `--chars` characters of the shared
toxic_spans data) is decoded many times by a bare `json.loads` of the envelope (all the
stock transport does before delivery) and by `decode`, which also bounds the envelope's
nesting and decodes the body as Celery will (base64, JSON, nesting). Alternating rounds,
best of each; figures go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import timeit
import uuid
from pathlib import Path

import redis
from celery import Celery

from workers.transport import decode

REDIS_URL = "redis://127.0.0.1:6379/8"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "toxic_spans" / "tsd_trial.csv"


def task_message(chars: int) -> bytes:
    app = Celery("bench-decode", broker=REDIS_URL)
    app.conf.update(task_serializer="json")
    queue = f"bench-decode-{uuid.uuid4().hex[:8]}"
    text = SHARED.read_text(encoding="utf-8")[:chars]
    item = {"id": "bench-1", "text": text, "meta": {"source": "toxic_spans", "n": [1, 2]}}
    app.send_task("quoteguard.moderate", args=[item], queue=queue)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        raw = client.rpop(queue)
    finally:
        client.delete(queue)
    assert isinstance(raw, bytes)
    assert decode(raw) is not None
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    raw = task_message(args.chars)
    number = 20_000
    steps = {"json.loads (stock)": lambda: json.loads(raw), "decode": lambda: decode(raw)}
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(args.rounds):
        for name, step in steps.items():
            best[name] = min(best[name], timeit.timeit(step, number=number) / number)
    print(f"Python {platform.python_version()}, {len(raw):,}-byte message, best of {args.rounds}\n")
    print("| step | µs per message |")
    print("|---|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds * 1e6:.1f} |")
    print(f"\ndecode / json.loads: {best['decode'] / best['json.loads (stock)']:.2f}x")


if __name__ == "__main__":
    main()
