"""Deterministic randomness keyed by what a request is about.

Every random choice of the simulator (a verdict flip, a hallucination, a logprob jitter, a
fault) draws from a `random.Random` seeded by a hash of its key, never from global state, so
an identical request gives an identical answer whatever ran before it or in parallel.
"""

from __future__ import annotations

import hashlib
import random


def digest(*parts: object) -> int:
    """A stable 64-bit integer from the parts' reprs (Python's `hash` is salted per process)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(repr(part).encode("utf-8", "surrogatepass"))
        h.update(b"\x1f")  # unit separator: ("ab", "c") and ("a", "bc") must differ
    return int.from_bytes(h.digest(), "big")


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by the parts."""
    return random.Random(digest(*parts))
