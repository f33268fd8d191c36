"""Throughput of the workers: items/s through Redis + Celery against the simulated model.

Run by hand from the repository root, with Redis on 127.0.0.1:6379 (it is not a test; it
takes a few minutes and uses Redis db 8 under a namespace of its own):

    .venv/bin/python benchmarks/bench_workers.py [--items 300] [--latency-ms 200]

1. Pools side by side: for each pool kind and concurrency, one worker process against the
   simulator answering after a fixed latency. A worker cannot beat concurrency / latency
   items per second; the table gives the measured rate as a share of that bound, and the
   worker's CPU seconds per item (what the bound turns into once the CPUs are the limit).
2. Per-item overhead of the worker path (submit -> broker -> task -> publish -> stream)
   over the in-process path (`Moderator.moderate`), both one item at a time, no latency.

The simulator runs in its own process so that it does not share a GIL with anyone.
Figures go to benchmarks/README.md ("Workers") by hand.

It leaves Redis as it found it: every key that appears in db 8 during the run (our
namespace's keys, and kombu's own: queue bindings `_kombu.binding.*`, the `unacked*`
records, Celery's event and pidbox bindings) is deleted at the end, and the count of keys
left behind is printed (0 expected).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from celery import Celery
from simulator import ROOT, TEXTS, env_with, simulator

REDIS_URL = "redis://127.0.0.1:6379/8"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (prefork's pool processes)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return ticks / os.sysconf("SC_CLK_TCK") + sum(cpu_seconds(int(c)) for c in children)


def start_worker(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A worker whose banner and logs stay out of the printed tables."""
    return subprocess.Popen(  # noqa: S603 - our interpreter, fixed arguments
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def worker_env(base_url: str, namespace: str) -> dict[str, str]:
    return env_with(
        QUOTEGUARD_REDIS_URL=REDIS_URL,
        QUOTEGUARD_NAMESPACE=namespace,
        QUOTEGUARD_BASE_URL=base_url,
        QUOTEGUARD_MODEL="sim-calibrated",
        QUOTEGUARD_LOG_LEVEL="error",
        QUOTEGUARD_METRICS_PORT="0",
    )


def run_worker_batch(base_url: str, pool: str, concurrency: int, items: int) -> dict[str, float]:
    """Start one worker, warm it up, time `items` items end to end, stop it."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{namespace}:decisions"
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-P", pool]
    argv += ["-c", str(concurrency), "-l", "error", "--without-mingle", "--without-gossip"]
    proc = start_worker(argv, worker_env(base_url, namespace))
    producer = Celery("bench", broker=REDIS_URL)
    producer.conf.update(task_serializer="json")

    def send(prefix: str, count: int) -> None:
        with producer.producer_or_acquire() as conn:
            for n in range(count):
                item = {"id": f"{prefix}-{n}", "text": TEXTS[n % len(TEXTS)]}
                producer.send_task(
                    "quoteguard.moderate", args=[item], queue=namespace, producer=conn
                )

    def wait(count: int) -> None:
        while client.xlen(stream) < count:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}")
            time.sleep(0.02)

    try:
        warm = max(concurrency, 8)
        send("warm", warm)
        wait(warm)
        cpu0, start = cpu_seconds(proc.pid), time.perf_counter()
        send("item", items)
        wait(warm + items)
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid) - cpu0
        latency = decision_latency_ms(client, stream, skip=warm)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for key in client.scan_iter(match=f"{namespace}*"):
            client.delete(key)
    return {"rate": items / elapsed, "cpu_ms": cpu / items * 1000, "latency_ms": latency}


def decision_latency_ms(client: redis.Redis, stream: str, skip: int) -> float:
    """Mean `Decision.latency_ms` (model call and pipeline, in the task) past the warm-up.

    Under load the simulator answers later than its fixed latency: concurrency / this is
    the bound the worker actually faced.
    """
    latencies = [
        json.loads(fields[b"decision"])["latency_ms"] for _, fields in client.xrange(stream)[skip:]
    ]
    return statistics.mean(latencies)


def in_process_ms(base_url: str, items: int) -> float:
    import logging  # noqa: PLC0415 - only this measurement needs the pipeline in-process

    import structlog  # noqa: PLC0415

    from pipeline.config import load_settings  # noqa: PLC0415
    from pipeline.models import ContentItem  # noqa: PLC0415
    from pipeline.runner import Moderator  # noqa: PLC0415

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    moderator = Moderator.from_settings(load_settings(model="sim-calibrated", base_url=base_url))
    for n in range(8):
        moderator.moderate(ContentItem(id=f"warm-{n}", text=TEXTS[n % len(TEXTS)]))
    times = []
    for n in range(items):
        start = time.perf_counter()
        moderator.moderate(ContentItem(id=f"i-{n}", text=TEXTS[n % len(TEXTS)]))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def worker_path_ms(base_url: str, items: int) -> float:
    """One item at a time through broker and worker (concurrency 1): median end to end."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{namespace}:decisions"
    argv = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-P", "threads"]
    argv += ["-c", "1", "-l", "error", "--without-mingle", "--without-gossip"]
    proc = start_worker(argv, worker_env(base_url, namespace))
    producer = Celery("bench", broker=REDIS_URL)
    producer.conf.update(task_serializer="json")
    times = []
    try:
        for n in range(items + 8):
            start = time.perf_counter()
            item = {"id": f"i-{n}", "text": TEXTS[n % len(TEXTS)]}
            producer.send_task("quoteguard.moderate", args=[item], queue=namespace)
            while client.xlen(stream) < n + 1:
                time.sleep(0.0005)
            if n >= 8:
                times.append(time.perf_counter() - start)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for key in client.scan_iter(match=f"{namespace}*"):
            client.delete(key)
    return statistics.median(times) * 1000


@contextmanager
def leaves_no_keys() -> Iterator[None]:
    """Delete every key of db 8 that was not there at the start, however the run ends."""
    client = redis.Redis.from_url(REDIS_URL)
    before = set(client.scan_iter(count=1000))
    try:
        yield
    finally:
        created = set(client.scan_iter(count=1000)) - before
        if created:
            client.delete(*created)
        left = set(client.scan_iter(count=1000)) - before
        print(f"\nRedis keys created by this run: {len(created)}; left behind: {len(left)}")


def main() -> None:
    with leaves_no_keys():
        run()


def run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument(
        "--only", action="append", default=None, help="pool:concurrency to run (repeatable)"
    )
    parser.add_argument("--no-overhead", action="store_true", help="skip the per-item overhead")
    args = parser.parse_args()
    cpu = platform.processor() or "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    print(f"machine: nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    runs = [
        ("threads", 8),
        ("gevent", 8),
        ("prefork", 8),
        ("threads", 32),
        ("gevent", 32),
        ("threads", 64),
        ("gevent", 64),
    ]
    if args.only:
        runs = [(pool, int(c)) for pool, c in (o.split(":") for o in args.only)]
    print(f"\n### {args.items} items, simulator latency fixed at {args.latency_ms:.0f} ms\n")
    print(
        "| pool | concurrency | bound items/s | items/s | share of bound | worker CPU ms/item "
        "| mean Decision latency ms | share of bound at that latency |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with simulator(args.latency_ms) as base_url:
        for pool, concurrency in runs:
            bound = concurrency / (args.latency_ms / 1000)
            got = run_worker_batch(base_url, pool, concurrency, args.items)
            print(
                f"| {pool} | {concurrency} | {bound:.0f} | {got['rate']:.1f} | "
                f"{got['rate'] / bound:.0%} | {got['cpu_ms']:.1f} | {got['latency_ms']:.0f} | "
                f"{got['rate'] * got['latency_ms'] / 1000 / concurrency:.0%} |",
                flush=True,
            )
    if args.no_overhead:
        return
    print("\n### Per-item overhead, one item at a time, no simulated latency\n")
    with simulator(0) as base_url:
        direct = in_process_ms(base_url, 100)
        queued = worker_path_ms(base_url, 100)
    print("| path | median ms/item |")
    print("|---|---:|")
    print(f"| in-process `Moderator.moderate` | {direct:.1f} |")
    print(f"| submit -> Redis -> worker -> stream | {queued:.1f} |")
    print(f"| overhead of the worker path | {queued - direct:.1f} |")


if __name__ == "__main__":
    main()
