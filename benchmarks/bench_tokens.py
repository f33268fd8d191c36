"""Per-item prompt tokens against the tokens of the content itself, on real comments.

Run by hand from the repository root (seconds; needs the `bench` extra for the tokenizer):

    .venv/bin/pip install -e ".[bench]"
    .venv/bin/python benchmarks/bench_tokens.py     # QUOTEGUARD_SHARED_DATA if not ../shared/data

Every prompt is a system message identical for all items (instructions and policies: the
provider's cached prefix) and a user message, the only part billed uncached per item. The
user message's own cost is its tokens minus the content's: the fence and any framing. The
"average comment" is the mean over the real comments of the shared data (toxic-spans train
and the OpenAI moderation samples, about 9,600 texts). Tokenizers: OpenAI's o200k_base
(gpt-4o, gpt-4.1) and cl100k_base (gpt-4, gpt-3.5), from the `bpe-openai` package, which
ships the vocabularies (tiktoken downloads them at first use, and this machine has no
network). Chat-template tokens around each message are the same for any prompt and left out.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import statistics
from pathlib import Path

import bpe_openai

from pipeline.policies import load_policies
from pipeline.prompt import build_messages

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))


def comments() -> list[str]:
    with (DATA / "toxic_spans" / "tsd_train.csv").open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)]
    with gzip.open(
        DATA / "openai_moderation" / "samples-1680.jsonl.gz", "rt", encoding="utf-8"
    ) as f:
        texts += [json.loads(line)["prompt"] for line in f if line.strip()]
    return texts


def main() -> None:
    texts = comments()
    policies = load_policies()
    print(f"{len(texts):,} comments from {DATA}\n")
    columns = (
        "tokenizer", "system (cached)", "content mean / median", "fence + framing mean (min-max)",
        "framing / mean comment", "uncached share of prompt",
    )  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("o200k_base", "cl100k_base"):
        enc = bpe_openai.get_encoding(name)
        system = len(enc.encode(str(build_messages("x", policies)[0]["content"])))
        content = [len(enc.encode(t)) for t in texts]
        framing = []
        for text, own in zip(texts, content, strict=True):
            user = str(build_messages(text, policies)[1]["content"])
            framing.append(len(enc.encode(user)) - own)
        mean_content = statistics.mean(content)
        mean_framing = statistics.mean(framing)
        uncached = (mean_framing + mean_content) / (system + mean_framing + mean_content)
        print(
            f"| {name} | {system:,} | {mean_content:.1f} / {statistics.median(content):.0f} | "
            f"{mean_framing:.1f} ({min(framing)}-{max(framing)}) | "
            f"{mean_framing / mean_content:.2f} | {uncached:.1%} |"
        )


if __name__ == "__main__":
    main()
