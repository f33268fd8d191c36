"""A corpus of hostile input, shared by the tests of the input edge, the CLI and the workers.

Lines a careless or hostile producer writes (nesting past every recursion limit, lone
surrogates, ids of the wrong type, a BOM, truncation, terminal control sequences) mixed with
real offensive and multilingual text from the shared data folder.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))

#: Deeper than any recursion limit of the JSON codecs, pydantic or the log renderer.
DEEP = 5_000
#: What a terminal would act on: clear screen, an OSC title, BEL, a right-to-left override.
TERMINAL_ATTACK = "\x1b[2J\x1b]0;pwned\x07\u202e"


def deep_brackets(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def hostile_lines() -> list[bytes]:
    """Each line is one item, or one named input problem; none may stop a run."""
    return [
        b'{"id": "deep-meta", "text": "hi", "meta": {"a": ' + deep_brackets(DEEP) + b"}}",
        deep_brackets(DEEP),
        b'{"id": "surrogate-text", "text": "a \\ud800 b"}',
        b'{"id": "x\\udfff", "text": "surrogate in the id"}',
        b'{"id": 42, "text": "a numeric id"}',
        b'{"id": {"an": "object"}, "text": "hi"}',
        b'{"id": "truncated", "text": "cut sho',
        b'{"id": "caf\xe9", "text": "invalid UTF-8"}',
        json.dumps({"id": f"esc{TERMINAL_ATTACK}", "text": f"hello {TERMINAL_ATTACK}"}).encode(),
        b'{"id": "huge-int", "text": "t", "meta": {"n": 1' + b"0" * 5000 + b"}}",
        b"\x00\xff\xfe garbage",
    ]


def shared_texts(per_source: int = 40) -> list[str]:
    """Real texts written by people: toxic comments and multilingual hate-speech cases."""
    spans = SHARED_DATA / "toxic_spans" / "tsd_trial.csv"
    if not spans.exists():
        pytest.skip(f"{spans} not found: set QUOTEGUARD_SHARED_DATA to the shared data folder")
    with spans.open(newline="", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][:per_source]
    for path in sorted((SHARED_DATA / "multilingual_hatecheck").glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            texts += [row["test_case"] for row in csv.DictReader(handle)][:per_source]
    return texts
