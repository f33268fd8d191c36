"""Policy files on disk → a `PolicySet`: find the files, read them, pick the parser.

A file's front-matter header picks its format (`markdown` unless it says `prose`). Loading
raises every error of every file at once; `parse_paths` returns them instead, for lint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError

from pipeline.policies.diagnostics import Diagnostic, lines_of, raise_errors
from pipeline.policies.header import Format, Header, split_header
from pipeline.policies.markdown import parse_markdown
from pipeline.policies.model import Policy, PolicySet
from pipeline.policies.parsed import ParsedFile
from pipeline.policies.prose import parse_prose

#: Files in a policies directory that are documentation, not policy.
NOT_POLICIES = frozenset({"readme.md"})

Parser = Callable[[Path, str, Header, dict[str, int]], ParsedFile]
PARSERS: dict[Format, Parser] = {"markdown": parse_markdown, "prose": parse_prose}


def default_policies_dir() -> Path:
    """The policy set shipped with quoteguard: the repository's `policies/` folder."""
    # Not importlib.resources.files("policies"). `policies` is a data-only namespace package,
    # and files() of one raises NotADirectoryError under our setuptools editable install
    # (the finder's path-hook placeholder sits in its __path__; python/importlib_resources
    # #311); elsewhere it merges every `policies/` folder on sys.path, the working
    # directory's under `python -m`. The folder beside this package is the shipped one in a
    # checkout, an editable install and a wheel alike.
    return Path(__file__).resolve().parents[2] / "policies"


def load_policies(path: Path | None = None) -> PolicySet:
    """Load a directory of policy files (`*.md` except README.md) or one file.

    Every problem in every file is reported at once, as a `PolicyErrors` when there are
    several; files load in name order, which is the order the model reads them in.
    """
    path = default_policies_dir() if path is None else Path(path)
    parsed, diagnostics = parse_paths([path])
    raise_errors(path, diagnostics)
    return policy_set(parsed)


def load_policy_file(path: Path) -> Policy:
    """Parse and validate one policy file; raises with every problem found in it."""
    parsed = parse_file(Path(path))
    raise_errors(path, parsed.diagnostics)
    assert parsed.policy is not None  # noqa: S101 - None only alongside errors
    return parsed.policy


def policy_set(parsed: list[ParsedFile]) -> PolicySet:
    """The set of files that parsed without errors, in load order."""
    return PolicySet(policies=tuple(p.policy for p in parsed if p.policy is not None))


def parse_paths(paths: Iterable[Path]) -> tuple[list[ParsedFile], list[Diagnostic]]:
    """Every file under the paths parsed, and every problem, cross-file ones included."""
    parsed: list[ParsedFile] = []
    diagnostics: list[Diagnostic] = []
    seen: set[Path] = set()  # `lint policies/ policies/spam.md` reads spam.md once
    for path in paths:
        files = policy_files(Path(path))
        if isinstance(files, Diagnostic):
            diagnostics.append(files)
            continue
        for file in files:
            if file.resolve() in seen:
                continue
            seen.add(file.resolve())
            one = parse_file(file)
            parsed.append(one)
            diagnostics.extend(one.diagnostics)
    diagnostics.extend(_cross_file(parsed))
    return parsed, diagnostics


def policy_files(path: Path) -> list[Path] | Diagnostic:
    """The policy files a path names, in load order, or why there are none."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.md") if p.name.lower() not in NOT_POLICIES)
        if not files:
            return Diagnostic(
                path, 1, 1, "PE002", "no policy files (*.md other than README.md) here"
            )
        return files
    if path.is_file():
        return [path]
    return Diagnostic(path, 1, 1, "PE002", "no such policy file or directory")


def parse_file(path: Path) -> ParsedFile:
    """One file through the parser its header names."""
    source = _read(path)
    if isinstance(source, Diagnostic):
        return ParsedFile(path, None, [], [source])
    split = split_header(path, source)
    if not split.closed:
        return ParsedFile(path, None, lines_of(source), split.diagnostics)
    parse = PARSERS[split.header.format]
    try:
        parsed = parse(path, split.body, split.header, split.header_lines)
    except ValidationError as exc:  # a gap in the parser's checks; still say which file
        return ParsedFile(
            path, None, [], [Diagnostic(path, 1, 1, "PE000", f"invalid policy: {exc}")]
        )
    parsed.diagnostics[:0] = split.diagnostics
    parsed.lines = lines_of(source)
    if split.diagnostics:
        parsed.policy = None
    return parsed


def _read(path: Path) -> str | Diagnostic:
    if path.exists() and not path.is_file():  # a FIFO would block the read for ever
        return Diagnostic(path, 1, 1, "PE001", "not a regular file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return Diagnostic(path, 1, 1, "PE001", f"cannot read the file: {exc.strerror}")
    try:
        # utf-8-sig: editors on Windows like to start files with a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return Diagnostic(
            path,
            line,
            col,
            "PE001",
            f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save the file as UTF-8",
        )


def _cross_file(parsed: list[ParsedFile]) -> Iterator[Diagnostic]:
    """A policy id, and so each of its rule ids, belongs to one file only."""
    first: dict[str, Policy] = {}
    seen: dict[str, str] = {}
    for one in parsed:
        policy = one.policy
        if policy is None:
            continue
        if policy.id in first:
            yield Diagnostic(
                one.path,
                _line(policy.rules[0].source),
                1,
                "PE203",
                f"policy id {policy.id} is already used by {first[policy.id].source}; each "
                "policy lives in one file, so give this one its own rule-id prefix",
            )
        first.setdefault(policy.id, policy)
        for rule in policy.rules:
            if rule.id in seen:
                yield Diagnostic(
                    one.path,
                    _line(rule.source),
                    1,
                    "PE202",
                    f"duplicate rule id {rule.id}: also defined at {seen[rule.id]}",
                )
            seen.setdefault(rule.id, rule.source)


def _line(source: str) -> int:
    return int(source.rpartition(":")[2])
