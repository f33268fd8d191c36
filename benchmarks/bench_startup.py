"""CLI start-up against the import floor, side by side in one run.

Run by hand from the repository root (it is not a test; about a minute):

    .venv/bin/python benchmarks/bench_startup.py [--runs 15]

Each command is timed as a whole process (start to exit), alternating with the floor
`python -c "import typer, rich"`, pair by pair; the table gives medians of CPU seconds
(user + system: less moved by other work on the machine than wall time) and the median of
the per-pair ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
FLOOR = [sys.executable, "-c", "import typer, rich"]
COMMANDS = {
    "quoteguard --help": [str(BIN / "quoteguard"), "--help"],
    "quoteguard moderate --help": [str(BIN / "quoteguard"), "moderate", "--help"],
    "quoteguard sim serve --help": [str(BIN / "quoteguard"), "sim", "serve", "--help"],
    "quoteguard review list --help": [str(BIN / "quoteguard"), "review", "list", "--help"],
}


def cpu_s(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    print("| command | CPU s (median) | floor CPU s | x floor (median of pairs) |")
    print("|---|---:|---:|---:|")
    for name, argv in COMMANDS.items():
        cpu_s(argv), cpu_s(FLOOR)  # warm the page cache
        pairs = [(cpu_s(argv), cpu_s(FLOOR)) for _ in range(args.runs)]
        ours = statistics.median(a for a, _ in pairs)
        floor = statistics.median(b for _, b in pairs)
        ratio = statistics.median(a / b for a, b in pairs)
        print(f"| `{name}` | {ours:.3f} | {floor:.3f} | {ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
