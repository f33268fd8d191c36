"""Client CPU per item: quoteguard against a bare httpx client, side by side in one run.

Run by hand from the repository root (it is not a test; about two minutes):

    .venv/bin/python benchmarks/bench_client.py [--items 300] [--rounds 3] [--profile out.prof]

Every client talks to the simulated model in its own process (no latency), so the CPU
measured is the client's alone. Three clients, rounds alternating between them, each figure
the best round (least disturbed by other work on the machine):

- bare: an `httpx` client in this process, one request at a time, posting the very request
  body quoteguard sends for the same item (captured from quoteguard's own HTTP hook) and
  reading every logprob of the response: the floor any client pays for HTTP and JSON;
- `Moderator.moderate` in this process, one item at a time (logging off);
- `quoteguard moderate` as a user runs it (default concurrency and log level, logs to
  /dev/null), its CPU read from the child's rusage; start-up excluded by running a short
  file and a long one and dividing the difference by the extra items.

`--profile` writes a cProfile of the in-process `Moderator.moderate` rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import structlog
from simulator import TEXTS, simulator

from pipeline.config import load_settings
from pipeline.models import ContentItem
from pipeline.runner import Moderator


def cpu_ms_per_item(run: Callable[[int], None], items: int) -> float:
    start = time.process_time()
    for n in range(items):
        run(n)
    return (time.process_time() - start) / items * 1000


def quoteguard_client(base_url: str) -> tuple[Callable[[int], None], list[bytes]]:
    """`Moderator.moderate` per item; also captures the request bodies it sends."""
    moderator = Moderator.from_settings(
        load_settings(model="sim-calibrated", base_url=base_url, api_key="bench")
    )
    bodies: list[bytes] = []
    moderator.client.openai._client.event_hooks["request"].append(
        lambda request: bodies.append(request.content) if len(bodies) < len(TEXTS) else None
    )

    def run(n: int) -> None:
        moderator.moderate(ContentItem(id=f"i-{n}", text=TEXTS[n % len(TEXTS)]))

    return run, bodies


def bare_client(base_url: str, bodies: list[bytes]) -> Callable[[int], None]:
    """POST the same body, parse the JSON, read every token's logprob and alternatives."""
    client = httpx2.Client(base_url=base_url, headers={"authorization": "Bearer bench"})

    def run(n: int) -> None:
        response = client.post(
            "/chat/completions",
            content=bodies[n % len(bodies)],
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()
        data: dict[str, Any] = json.loads(response.content)
        total = 0.0
        for token in data["choices"][0]["logprobs"]["content"]:
            total += token["logprob"] + sum(alt["logprob"] for alt in token["top_logprobs"])
        json.loads(data["choices"][0]["message"]["content"])

    return run


def cli_cpu_s(base_url: str, items: Path) -> float:
    """CPU seconds (user + system) of one `quoteguard moderate` run over `items`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [str(Path(sys.executable).parent / "quoteguard"), "moderate", str(items)]
    argv += ["--base-url", base_url, "--model", "sim-calibrated", "--out", os.devnull]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTEGUARD_")}
    subprocess.run(  # noqa: S603 - our own entry point, fixed arguments
        argv, env={**env, "OPENAI_API_KEY": "bench"}, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def write_items(path: Path, count: int) -> Path:
    lines = (json.dumps({"id": f"i-{n}", "text": TEXTS[n % len(TEXTS)]}) for n in range(count))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli_ms_per_item(base_url: str, short: Path, long: Path, extra: int) -> float:
    return (cli_cpu_s(base_url, long) - cli_cpu_s(base_url, short)) / extra * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    with simulator(0) as base_url:
        ours, bodies = quoteguard_client(base_url)
        for n in range(len(TEXTS) * 2):  # warm up: connections, caches, captured bodies
            ours(n)
        bare = bare_client(base_url, bodies)
        for n in range(len(TEXTS) * 2):
            bare(n)
        names = ("bare httpx", "Moderator.moderate", "quoteguard moderate")
        best = dict.fromkeys(names, float("inf"))
        profiler = cProfile.Profile() if args.profile else None
        with tempfile.TemporaryDirectory() as tmp:
            short = write_items(Path(tmp) / "short.jsonl", 20)
            long = write_items(Path(tmp) / "long.jsonl", 20 + args.items)
            for _ in range(args.rounds):
                best[names[0]] = min(best[names[0]], cpu_ms_per_item(bare, args.items))
                if profiler is not None:
                    profiler.enable()
                best[names[1]] = min(best[names[1]], cpu_ms_per_item(ours, args.items))
                if profiler is not None:
                    profiler.disable()
                cli = cli_ms_per_item(base_url, short, long, args.items)
                best[names[2]] = min(best[names[2]], cli)
        if profiler is not None:
            profiler.dump_stats(args.profile)
    print(f"request body: {len(bodies[0]):,} bytes")
    print("| client | CPU ms/item | x bare |")
    print("|---|---:|---:|")
    for name in names:
        print(f"| {name} | {best[name]:.2f} | {best[name] / best[names[0]]:.1f} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
