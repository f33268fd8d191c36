"""Cost of the in-flight list: consuming with workers.transport vs kombu's stock Redis transport.

Run by hand from the repository root, with Redis on 127.0.0.1:6379 (it is not a test; it
takes under a minute and uses Redis db 8, queues of its own, deleted at the end):

    .venv/bin/python benchmarks/bench_transport.py [--messages 3000] [--rounds 3]

Each round publishes the same messages once per transport, then consumes them one at a
time (get + ack, as a worker with prefetch 1 does) and times the consuming only. Rounds
alternate the two transports so that load on the shared machine hits both alike; the
table gives the best round of each and the ratio. Figures go to benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import platform
import time
import uuid

import kombu
import redis

REDIS_URL = "redis://127.0.0.1:6379/8"
TRANSPORTS = {"kombu redis (BRPOP)": "redis", "workers.transport (BLMOVE)": None}


def consume_seconds(transport: str | None, queue: str, count: int) -> float:
    kwargs = {"transport": "workers.transport:Transport"} if transport is None else {}
    with kombu.Connection(REDIS_URL, **kwargs) as producer_conn:
        q = producer_conn.SimpleQueue(queue)
        for i in range(count):
            q.put({"i": i, "text": "x" * 200})
    with kombu.Connection(REDIS_URL, **kwargs) as conn:
        q = conn.SimpleQueue(queue)
        start = time.perf_counter()
        for _ in range(count):
            q.get(timeout=5).ack()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    queue = f"bench-transport-{uuid.uuid4().hex[:8]}"
    best: dict[str, float] = {}
    try:
        for _ in range(args.rounds):
            for name, transport in TRANSPORTS.items():
                seconds = consume_seconds(transport, queue, args.messages)
                best[name] = min(best.get(name, seconds), seconds)
    finally:
        for key in client.scan_iter(f"*{queue}*"):
            client.delete(key)
    server = client.info("server")["redis_version"]
    print(f"Python {platform.python_version()}, Redis {server}, kombu {kombu.__version__}")
    print(f"{args.messages} messages, best of {args.rounds} rounds\n")
    print("| transport | µs per message | messages/s |")
    print("|---|---:|---:|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds / args.messages * 1e6:.0f} | {args.messages / seconds:.0f} |")
    stock, ours = best.values()
    print(f"\nworkers.transport / stock: {ours / stock:.2f}x the time per message")


if __name__ == "__main__":
    main()
