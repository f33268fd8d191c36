"""Benchmark of `pipeline.grounding.locate` against `str.find` and a difflib baseline.

Run by hand from the repository root (it is not a test, and it takes a few minutes):

    .venv/bin/python benchmarks/bench_grounding.py

Three workloads, each timed side by side in one run:

1. toxic-spans: every human-marked span of tsd_trial.csv as a quote in its own comment,
   verbatim and in altered forms (normalised, one letter slip, a word swapped, absent).
2. 1 MB of content with 20 quotes (verbatim, needing normalisation, with a slip, absent),
   in Latin script (toxic-spans comments) and in Arabic, Mandarin and Hindi (Multilingual
   HateCheck cases; its Hindi is written in Latin letters): one `locate_all` against the
   difflib baseline, quote by quote.
3. content that repeats itself, at 100k, 200k and 400k chars: the time must double with
   the content (linear), shown against one normalising pass over the same content.

`str.find` is the floor (it only ever finds verbatim quotes). The difflib baseline is what
one writes without this module: slide a window over the lowercased content and accept the
first where `SequenceMatcher` matches 90 % of the quote's chars; it gets a time budget
per quote so that it finishes on 1 MB (so its totals, and our ratios, are lower bounds).
Figures go to benchmarks/README.md by hand.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import platform
import random
import re
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import rapidfuzz

from pipeline.grounding import Grounder, locate, locate_all, normalize
from pipeline.wordbreak import writes_without_spaces

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("QUOTEGUARD_SHARED_DATA", REPO.parent / "shared" / "data"))
SPANS = DATA / "toxic_spans"
DIFFLIB_BUDGET_S = 2.0  # per quote: enough to scan 1 MB for short quotes, not for long ones
DIFFLIB_SHARE = 0.9  # share of the quote's chars difflib must match to accept a window
REPEATS = 5  # timings are the best of this many runs: the box is shared


# ----------------------------------------------------------------------------- data


def load(name: str) -> list[tuple[str, list[tuple[int, int]]]]:
    rows = []
    with (SPANS / name).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            spans: list[list[int]] = []
            for offset in sorted(set(json.loads(row["spans"]))):
                if spans and offset == spans[-1][1]:
                    spans[-1][1] = offset + 1
                else:
                    spans.append([offset, offset + 1])
            rows.append((row["text"], [(a, b) for a, b in spans]))
    return rows


Case = tuple[str, str]  # (quote, content)


def toxic_cases(rows: list[tuple[str, list[tuple[int, int]]]]) -> dict[str, list[Case]]:
    rng = random.Random(1)
    quotes = [text[a:b] for text, spans in rows for a, b in spans]
    cases: dict[str, list[Case]] = {
        "verbatim": [],
        "normalised": [],
        "slip": [],
        "word swapped": [],
        "absent": [],
    }
    for text, spans in rows:
        for a, b in spans:
            quote = text[a:b]
            cases["verbatim"].append((quote, text))
            cases["normalised"].append((f"“{quote.upper()}”", text))
            slipped = slip(quote, rng)
            if slipped is not None:
                cases["slip"].append((slipped, text))
                cases["word swapped"].append((swap_a_word(quote), text))
            other = rng.choice(quotes)
            if other.lower() not in text.lower():
                cases["absent"].append((other, text))
    return cases


Document = tuple[str, list[tuple[int, int]]]  # a text and the spans worth quoting in it


def hatecheck(language: str) -> list[Document]:
    """HateCheck test cases three by three as posts quoted whole (quotes of 30-150 chars,
    as long as the marked toxic spans), to 1 MB: the ~130 KB of a language again and
    again, each copy with the words of every case in another order (Han text: its
    characters), so that no sentence repeats and no search ends in the first copy."""
    path = DATA / "multilingual_hatecheck" / f"{language}.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        cases = [row["test_case"].strip() for row in csv.DictReader(handle)]
    rng = random.Random(4)
    documents: list[Document] = []
    size = 0
    while size < 1_000_000:
        for case in cases:
            spaced = " " in case
            units = case.split(" ") if spaced else list(case)
            text = (" " if spaced else "").join(rng.sample(units, len(units)))
            documents.append((text, [(0, len(text))]))
            size += len(text) + 2
    return [
        (post := " ".join(text for text, _ in documents[k : k + 3]), [(0, len(post))])
        for k in range(0, len(documents), 3)
    ]


def slip(quote: str, rng: random.Random) -> str | None:
    """A copying slip inside the quote: a letter dropped, or in Han text (where a dropped
    character is a dropped word) a character doubled."""
    inner = list(re.finditer(r"\w+", quote))[1:-1] or list(re.finditer(r"\w+", quote))
    words = [m for m in inner if len(m.group()) >= 5]
    if len(quote) < 30 or not words:  # 30: a slip in a quote of 24+ chars once trimmed
        return None
    word = rng.choice(words)
    at = word.start() + rng.randrange(1, len(word.group()) - 1)
    if writes_without_spaces(quote[at]):
        return quote[:at] + quote[at] + quote[at:]
    return quote[:at] + quote[at + 1 :]


def megabyte_case(documents: list[Document]) -> tuple[str, list[tuple[str, str]]]:
    """1 MB of documents (shuffled copies when there are fewer) and 20 quotes of four
    kinds, spread from its start to its end."""
    content, spans = "", []
    rng = random.Random(3)
    while len(content) < 1_000_000:
        for text, marked in documents:
            spans += [(len(content) + a, len(content) + b) for a, b in marked]
            content += text + "\n\n"
            if len(content) >= 1_000_000:
                break
        documents = rng.sample(documents, len(documents))
    content = content[:1_000_000]
    spans = [s for s in spans if s[1] <= len(content)]
    long_spans = [s for s in spans if s[1] - s[0] >= 30 and slip(content[slice(*s)], rng)]
    pick = [spans[len(spans) * k // 6] for k in range(6)]
    far = [long_spans[len(long_spans) * k // 5] for k in range(5)]
    q = [content[a:b] for a, b in pick]
    far_q = [content[a:b] for a, b in far]
    quotes: list[tuple[str, str]] = [  # (kind, quote)
        *[("verbatim", x) for x in q],
        ("normalised", q[1].upper()),
        ("normalised", f"“{q[3]}”"),
        ("normalised", far_q[0].replace(" ", "  \n")),
        ("normalised", f"{q[4]} … {q[5]}"),
        ("normalised", far_q[1].upper()),
        *[("slip", slip(x, rng) or x) for x in far_q],
        ("absent", "xylophonists"),
        ("absent", "the committee approved the budget without any objections at all"),
        ("absent", swap_a_word(far_q[2])),
        ("absent", f"{far_q[4]} ... {far_q[3]}"),  # pieces out of order
    ]
    return content, quotes


def swap_a_word(quote: str) -> str:
    words = quote.split(" ")
    longest = max(range(len(words)), key=lambda k: len(words[k]))
    words[longest] = "pineapple" if words[longest].isascii() else "مربى" + words[longest][-1:]
    return " ".join(words)


# ----------------------------------------------------------------------------- baseline


def difflib_locate(quote: str, content: str, budget_s: float) -> tuple[int, int] | str | None:
    """First window matching DIFFLIB_SHARE of the quote; "timeout" past the budget."""
    deadline = time.perf_counter() + budget_s
    needle = quote.lower()
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(needle)  # seq2 is the side difflib indexes: index the short one once
    width, step = 2 * len(needle), max(len(needle), 1)
    want = DIFFLIB_SHARE * len(needle)
    for start in range(0, max(len(content) - len(needle), 0) + 1, step):
        window = content[start : start + width].lower()
        matcher.set_seq1(window)
        bound = matcher.quick_ratio() * (len(window) + len(needle)) / 2  # most chars matchable
        if bound >= want:
            blocks = [b for b in matcher.get_matching_blocks() if b.size]
            if sum(b.size for b in blocks) >= want:
                return start + blocks[0].a, start + blocks[-1].a + blocks[-1].size
        if time.perf_counter() > deadline:
            return "timeout"
    return None


# ----------------------------------------------------------------------------- timing


def best_of(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """Seconds of the fastest of `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def run_all(find: Callable[[str, str], object], cases: Iterable[Case]) -> Callable[[], None]:
    pairs = list(cases)

    def run() -> None:
        for quote, content in pairs:
            find(quote, content)

    return run


def grounded(result: object) -> bool:
    if isinstance(result, str):
        return False
    if isinstance(result, int):
        return result >= 0
    return result is not None


def bench_toxic() -> None:
    cases = toxic_cases(load("tsd_trial.csv"))
    print("\n### toxic-spans trial: one call per (quote, comment)\n")
    print(
        "| quotes | n | str.find µs | locate µs | × find | difflib µs | × find "
        "| grounded by find / locate / difflib |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for kind, pairs in cases.items():
        n = len(pairs)
        finders: list[Callable[[str, str], object]] = [
            lambda q, c: c.find(q),
            locate,
            lambda q, c: difflib_locate(q, c, DIFFLIB_BUDGET_S),
        ]
        t_find, t_locate = (best_of(run_all(f, pairs)) for f in finders[:2])
        t_difflib = best_of(run_all(finders[2], pairs), 1)
        hits = " / ".join(str(sum(grounded(f(q, c)) for q, c in pairs)) for f in finders)
        print(
            f"| {kind} | {n} | {t_find / n * 1e6:.2f} | {t_locate / n * 1e6:.1f} "
            f"| {t_locate / t_find:.0f} | {t_difflib / n * 1e6:.0f} | {t_difflib / t_find:.0f} "
            f"| {hits} |"
        )


def bench_megabyte(script: str, documents: list[Document]) -> tuple[str, ...]:
    """One script's 1 MB table; returns its row of the summary."""
    content, quotes = megabyte_case(documents)
    print(f"\n### 1 MB of {script} ({len(content):,} chars), 20 quotes\n")
    build = best_of(lambda: Grounder(content).normalized, 3)
    every = [quote for _, quote in quotes]
    t_all = best_of(lambda: locate_all(every, content), 3)
    print(f"normalising once: {build * 1e3:.0f} ms; locate_all(20 quotes): {t_all * 1e3:.0f} ms\n")
    warm = Grounder(content)
    for quote in every:  # normalises and lists the words, once
        warm.locate(quote)
    print(
        "| kind | len | str.find ms | Grounder.locate ms (warm) | × find | method | strength "
        "| difflib ms | difflib |"
    )
    print("|---|---:|---:|---:|---:|---|---|---:|---|")
    t_difflib_all = t_find_verbatim = t_locate_verbatim = 0.0
    for kind, quote in quotes:
        t_find = best_of(partial(content.find, quote))
        t_warm = best_of(partial(warm.locate, quote))
        if kind == "verbatim":
            t_find_verbatim += t_find
            t_locate_verbatim += best_of(partial(locate, quote, content))
        match = warm.locate(quote)
        start = time.perf_counter()
        baseline = difflib_locate(quote, content, DIFFLIB_BUDGET_S)
        t_difflib = time.perf_counter() - start
        t_difflib_all += t_difflib
        said = baseline if isinstance(baseline, str) else ("found" if baseline else "none")
        print(
            f"| {kind} | {len(quote)} | {t_find * 1e3:.3f} | {t_warm * 1e3:.3f} "
            f"| {t_warm / t_find:.1f} | {match.method if match else 'none'} "
            f"| {match.strength if match else '-'} | {t_difflib * 1e3:.0f} | {said} |"
        )
    return (
        script,
        f"{build * 1e3:.0f}",
        f"{t_all * 1e3:.0f}",
        f"{t_difflib_all * 1e3:.0f}",
        f"{t_difflib_all / t_all:.0f}",
        f"{t_locate_verbatim / t_find_verbatim:.2f}",
    )


REPETITIVE: dict[str, Callable[[int], tuple[str, str]]] = {  # name -> size -> (quote, content)
    '"a"*n/2 in "a"*n': lambda n: ("a" * (n // 2), "a" * n),
    '"spam "*200+"eggs"': lambda n: ("spam " * 200 + "eggs", "spam " * (n // 5)),
    '"spam "*200 with a slip': lambda n: ("spam " * 199 + "spma", "spam " * (n // 5)),
    '"a"*(n/2-1)+"b"': lambda n: ("a" * (n // 2 - 1) + "b", "a" * n),
    '"ab"*12k+"b" in "ab "*n/3': lambda n: ("ab" * 12_000 + "b", "ab " * (n // 3)),
    '"x "*30+"y" in "x "*n/2': lambda n: ("x " * 30 + "y", "x " * (n // 2)),
}


def bench_repetitive() -> None:
    print("\n### Content that repeats itself: ms per `locate`, and in normalising passes\n")
    sizes = (100_000, 200_000, 400_000)
    print("| quote, content | " + " | ".join(f"{n // 1000}k ms (passes)" for n in sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    for name, make in REPETITIVE.items():
        cells = []
        for n in sizes:
            quote, content = make(n)
            t_locate = best_of(partial(locate, quote, content), 3)
            t_pass = best_of(partial(normalize, content), 3)
            cells.append(f"{t_locate * 1e3:.1f} ({t_locate / t_pass:.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor()


def main() -> None:
    if not SPANS.is_dir():
        raise SystemExit(f"{SPANS} not found: set QUOTEGUARD_SHARED_DATA")
    print(
        f"nproc {len(os.sched_getaffinity(0))}, CPU {cpu_model()}, "
        f"Python {platform.python_version()}, rapidfuzz {rapidfuzz.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    bench_toxic()
    summary = [bench_megabyte("Latin (toxic spans)", load("tsd_train.csv"))]
    summary += [bench_megabyte(lang, hatecheck(lang)) for lang in ("arabic", "mandarin", "hindi")]
    print("\n### 1 MB, 20 quotes: summary\n")
    print(
        "| content | normalise ms | locate_all ms | difflib ms (lower bound) | × faster "
        "| verbatim: locate / str.find |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for row in summary:
        print("| " + " | ".join(row) + " |")
    bench_repetitive()


if __name__ == "__main__":
    main()
