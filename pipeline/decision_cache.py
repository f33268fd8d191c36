"""A per-run, append-only cache of Decisions, so an evaluation is resumable and re-runnable.

One JSONL file per run configuration (`run_key`) under a cache directory; each line is
`{"key": ..., "decision": {...}}`, keyed by (item id, SHA-256 of the text, model, policy
version). An edited item gets a new key and is moderated again; an unchanged one is not.

Each line goes to the file in one `write` on an O_APPEND descriptor as soon as its Decision
exists: a killed process loses at most the line being written, two runs appending to the
same file do not interleave within a line, and `load` skips a torn line (logging it), so
the next run simply redoes that item. Error Decisions are never stored:
a provider outage must be retried by the next run, not remembered as the answer.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import TracebackType

import structlog
from pydantic import ValidationError

from pipeline.models import Decision

log = structlog.get_logger("quoteguard")


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def item_key(item_id: str, text: str, model: str, policy_version: str) -> str:
    """The cache key of one item's Decision under one model and policy set."""
    return _sha(json.dumps([item_id, _sha(text), model, policy_version]))[:32]


def _torn(path: Path) -> bool:
    """Whether a non-empty file's last line lacks its newline (a write was cut short)."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as handle:
        handle.seek(-1, 2)
        return handle.read(1) != b"\n"


def run_key(parts: dict[str, object]) -> str:
    """A short stable name for a run configuration (the cache file's name)."""
    return _sha(json.dumps(parts, sort_keys=True, default=str))[:16]


class DecisionCache:
    """Decisions already made for one run configuration; append as new ones arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @classmethod
    def in_dir(cls, directory: Path | str, key: str) -> DecisionCache:
        return cls(Path(directory) / f"decisions-{key}.jsonl")

    def load(self) -> dict[str, Decision]:
        """Every readable entry; a later line for the same key wins."""
        if not self.path.exists():
            return {}
        found: dict[str, Decision] = {}
        skipped = 0
        with self.path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    found[str(record["key"])] = Decision.model_validate(record["decision"])
                except (json.JSONDecodeError, KeyError, TypeError, ValidationError):
                    skipped += 1
        if skipped:
            # Usually the torn last line of an interrupted run; those items are redone.
            log.warning("decision_cache_lines_skipped", path=str(self.path), skipped=skipped)
        return found

    def append(self, key: str, decision: Decision) -> None:
        if decision.outcome == "error":
            return
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _torn(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            if torn:
                # End the torn line first, or the next entry would be glued to it and lost.
                os.write(self._fd, b"\n")
        line = json.dumps({"key": key, "decision": decision.model_dump(mode="json")})
        # One unbuffered write per line: the kernel has it when this returns (a killed
        # process cannot lose it), and O_APPEND keeps concurrent writers' lines whole.
        os.write(self._fd, (line + "\n").encode("utf-8"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DecisionCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
