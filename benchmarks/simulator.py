"""What the benchmarks share: the simulated model in a process of its own, and the texts.

Imported by the scripts beside it (`python benchmarks/bench_x.py` puts this folder first on
sys.path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "Lovely weather today, see you at the market on Saturday.",
    "You are a worthless idiot and nobody wants you here.",
    "Thanks for the help yesterday, the recipe worked perfectly.",
    "Shut up, you pathetic moron, you embarrass everyone.",
]
SIM = """
import sys, uvicorn
from pipeline.sim.config import LatencyConfig, SimConfig
from pipeline.sim.server import create_app
config = SimConfig(latency=LatencyConfig(mean_ms=float(sys.argv[2]), distribution="fixed"))
uvicorn.run(create_app(config), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_with(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTEGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@contextmanager
def simulator(latency_ms: float) -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, "-c", SIM, str(port), str(latency_ms)]
    proc = subprocess.Popen(argv, env=env_with())  # noqa: S603 - our interpreter, fixed args
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
