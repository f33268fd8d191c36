"""`quoteguard policy lint | show | test | diff`: the policy writer's tools.

    quoteguard policy lint policies/             problems as path:line:col: CODE message
    quoteguard policy show policies/ --json      the parsed set, as the pipeline reads it
    quoteguard policy test policies/ --sim       every example through the whole pipeline
    quoteguard policy diff old/ policies/        rules added, removed and changed

Exit codes: 0 clean, 1 problems found (lint errors, failed examples, a set that does not
load), 2 usage errors. The modules doing the work are imported inside each command so
that `quoteguard --help` stays fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TextIO

import typer

from pipeline.cli.options import BaseUrlOpt, ConcurrencyOpt

if TYPE_CHECKING:
    from pipeline.policies import PolicySet
    from pipeline.policies.testing import Case, Report

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)  # plain help: see pipeline.cli

PathArg = Annotated[Path, typer.Argument(help="A policy file or a folder of them.")]


def register(app_: typer.Typer) -> None:
    app_.add_typer(app, name="policy", help="Lint, show, test and diff policy files.")


def _out(line: str = "", stream: TextIO | None = None) -> None:
    """A line on stdout (or `stream`) with control characters escaped: policy text and
    Decisions files are user-written."""
    from pipeline.log import printable  # noqa: PLC0415 - keep start-up fast

    (stream or sys.stdout).write(printable(line) + "\n")


def _out_json(doc: object) -> None:
    """One JSON document on stdout: other scripts stay readable, but control and format
    characters (bidi overrides, C1 escapes such as U+009B) are \\u escapes, which a JSON
    reader turns back into the same text and a terminal does not obey."""
    import unicodedata  # noqa: PLC0415

    text = json.dumps(doc, indent=2, ensure_ascii=False)
    escaped = (
        json.dumps(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf") and c != "\n" else c
        for c in text
    )
    sys.stdout.write("".join(escaped) + "\n")


def _load(path: Path) -> PolicySet:
    """The set, or its problems on stderr and exit 1: a broken set is a finding here."""
    from pipeline.errors import PolicyError  # noqa: PLC0415
    from pipeline.log import printable  # noqa: PLC0415
    from pipeline.policies import load_policies  # noqa: PLC0415

    try:
        return load_policies(path)
    except PolicyError as exc:
        sys.stderr.write(printable(str(exc)).replace("\\u000a", "\n") + "\n")
        sys.stderr.write(f"run `quoteguard policy lint {path}` for every problem with its code\n")
        raise typer.Exit(1) from exc


# ----------------------------------------------------------------------------- lint


@app.command()
def lint(
    paths: Annotated[list[Path], typer.Argument(help="Policy files or folders: one set.")],
    output_format: Annotated[
        Literal["text", "json"], typer.Option("--format", help="text: one line per problem.")
    ] = "text",
    strict: Annotated[bool, typer.Option(help="Warnings fail too (exit 1).")] = False,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Warn above this many prompt tokens.")
    ] = None,
) -> None:
    """Check policy files: every problem with its file, line, column and a stable code.

    PE codes are errors and exit 1; PW codes are warnings and exit 0 unless --strict.
    """
    from pipeline.policies.diagnostics import CODES  # noqa: PLC0415
    from pipeline.policies.lint import DEFAULT_MAX_TOKENS, ESTIMATE_METHOD  # noqa: PLC0415
    from pipeline.policies.lint import lint as run_lint  # noqa: PLC0415
    from pipeline.prompt import system_message  # noqa: PLC0415

    result = run_lint(
        paths, render_prompt=system_message, max_tokens=max_tokens or DEFAULT_MAX_TOKENS
    )
    if output_format == "json":
        doc = {
            "diagnostics": [d.as_json() for d in result.diagnostics],
            "errors": result.errors,
            "warnings": result.warnings,
            "tokens": result.tokens,
            "token_estimate": ESTIMATE_METHOD,
            "codes": CODES,
        }
        _out_json(doc)
    else:
        for diagnostic in result.diagnostics:
            _out(str(diagnostic))
        summary = f"{_count(result.errors, 'error')}, {_count(result.warnings, 'warning')}"
        if result.tokens is not None:
            summary += f"; the set is about {result.tokens} prompt tokens"
        sys.stderr.write(summary + "\n")
    if result.errors or (strict and result.warnings):
        raise typer.Exit(1)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ----------------------------------------------------------------------------- show


@app.command()
def show(
    path: PathArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Print the parsed set: ids, titles, severities, rule texts, examples, the version."""
    policies = _load(path)
    if as_json:
        _out_json(_show_doc(policies))
        return
    rules = len(policies.rules)
    _out(f"policy set {policies.version}: {len(policies.policies)} policies, {rules} rules")
    for policy in policies.policies:
        _out()
        _out(f"{policy.id}  {policy.title}  ({policy.source})")
        for rule in policy.rules:
            _out(f"  {rule.id}  {rule.title}  [{rule.severity}]  ({rule.source})")
            for paragraph in rule.text.split("\n\n"):
                _out(f"      {paragraph}")
            _out(f"    violates ({len(rule.violating)}):")
            for example in rule.violating:
                _out(f"      - {example}")
            _out(f"    does not violate ({len(rule.non_violating)}):")
            for example in rule.non_violating:
                _out(f"      - {example}")
        if policy.allowed:
            _out(f"  allowed under {policy.id} ({len(policy.allowed)}):")
            for example in policy.allowed:
                _out(f"      - {example}")


def _show_doc(policies: PolicySet) -> dict[str, object]:
    return {
        "version": policies.version,
        "policies": [
            {
                "id": policy.id,
                "title": policy.title,
                "description": policy.description,
                "source": policy.source,
                "allowed_examples": list(policy.allowed),
                "rules": [
                    {
                        "id": rule.id,
                        "title": rule.title,
                        "severity": rule.severity,
                        "text": rule.text,
                        "examples": list(rule.violating),
                        "allowed_examples": list(rule.non_violating),
                        "source": rule.source,
                    }
                    for rule in policy.rules
                ],
            }
            for policy in policies.policies
        ],
    }


# ----------------------------------------------------------------------------- test


@app.command("test")
def run_examples(
    path: PathArg,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name (with --sim: a sim profile).")
    ] = None,
    sim: Annotated[
        bool, typer.Option("--sim", help="Start the simulated model in-process (offline).")
    ] = False,
    base_url: BaseUrlOpt = None,
    junit_xml: Annotated[
        Path | None,
        typer.Option("--junit-xml", dir_okay=False, help="Also write a JUnit XML report here."),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Only this rule or policy id (repeat for more)."),
    ] = None,
    concurrency: ConcurrencyOpt = None,
) -> None:
    """Run every example through the whole pipeline as a test case.

    A violating example must be flagged under its rule with grounded quotes; a
    non-violating or allowed one must not be flagged under its policy. Exits 1 on failures.
    """
    from pipeline.policies.testing import cases  # noqa: PLC0415

    if junit_xml is not None and not junit_xml.absolute().parent.is_dir():
        # Said before the run, not after it has spent minutes on a real model.
        raise typer.BadParameter(
            f"no folder {junit_xml.parent} to write it in", param_hint="--junit-xml"
        )
    policies = _load(path)
    todo = cases(policies)
    if only:
        known = {c.rule_id for c in todo} | {c.policy_id for c in todo}
        unknown = sorted(set(only) - known)
        if unknown:
            raise typer.BadParameter(f"no rule or policy {', '.join(unknown)}", param_hint="--only")
        todo = [c for c in todo if c.rule_id in only or c.policy_id in only]
    from pipeline.cli.endpoint import endpoint  # noqa: PLC0415 - keep start-up fast

    if sim:
        model = model or "sim-calibrated"
    with endpoint(base_url, sim) as (url, key):
        report = _run_cases(path, todo, model, url, key, concurrency)
    for line in report.lines():
        _out(line)
    if junit_xml is not None:
        try:
            report.write_junit(junit_xml, f"quoteguard policy test {path}")
        except OSError as exc:
            _out(f"cannot write the JUnit XML to {junit_xml}: {exc.strerror}", sys.stderr)
            raise typer.Exit(1) from exc
        sys.stderr.write(f"JUnit XML written to {junit_xml}\n")
    if report.failed:
        raise typer.Exit(1)


def _run_cases(
    path: Path,
    todo: list[Case],
    model: str | None,
    base_url: str | None,
    api_key: str | None,
    concurrency: int | None,
) -> Report:
    import os  # noqa: PLC0415

    from pipeline.batch import run_batch  # noqa: PLC0415
    from pipeline.cli.endpoint import require_endpoint  # noqa: PLC0415
    from pipeline.config import load_settings  # noqa: PLC0415
    from pipeline.errors import QuoteguardError  # noqa: PLC0415
    from pipeline.log import configure_logging  # noqa: PLC0415
    from pipeline.models import Decision  # noqa: PLC0415
    from pipeline.policies.testing import Report, judge  # noqa: PLC0415
    from pipeline.runner import Moderator  # noqa: PLC0415

    # The reader wants the results, not a JSON event per stage; QUOTEGUARD_LOG_LEVEL=info
    # brings the events back.
    quiet = None if "QUOTEGUARD_LOG_LEVEL" in os.environ else "warning"
    try:
        settings = load_settings(
            model=model,
            base_url=base_url,
            api_key=api_key,
            concurrency=concurrency,
            policies_dir=path,
            log_level=quiet,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    require_endpoint(settings)
    configure_logging(settings.log_level, settings.log_format, secrets=[settings.api_key])
    decisions: dict[str, Decision] = {}
    try:
        moderator = Moderator.from_settings(settings)
    except QuoteguardError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with moderator:
        items = (case.item() for case in todo)
        run_batch(
            moderator, items, lambda d: decisions.__setitem__(d.item_id, d), settings.concurrency
        )
        policies = moderator.policies
    return Report([judge(case, decisions[case.id], policies) for case in todo])


# ----------------------------------------------------------------------------- diff


@app.command()
def diff(
    old: Annotated[Path, typer.Argument(help="The previous set (file or folder).")],
    new: Annotated[Path, typer.Argument(help="The new set (file or folder).")],
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            exists=True,
            dir_okay=False,
            help="Decisions JSONL: name the rule ids they cite that NEW no longer has.",
        ),
    ] = None,
) -> None:
    """Rules added, removed and changed between two sets, with both version hashes."""
    from pipeline.policies.diff import cited_ids  # noqa: PLC0415
    from pipeline.policies.diff import diff as run_diff  # noqa: PLC0415

    before, after = _load(old), _load(new)
    changes = run_diff(before, after)
    _out(f"policy set {changes.old_version} -> {changes.new_version}")
    if changes.same:
        _out("no change to what the model reads")
    for rule in changes.added:
        _out(f"+ {rule.id}  {rule.title}  [{rule.severity}]  ({rule.source})")
    for rule in changes.removed:
        _out(f"- {rule.id}  {rule.title}  [{rule.severity}]  (was {rule.source})")
    for change in [*changes.policies, *changes.changed]:
        _out(f"~ {change.id}")
        for name, (was, now) in change.fields.items():
            _out(f"    {name}: {_short(was)} -> {_short(now)}")
        for kind, example in change.added:
            _out(f"    + {kind}: {example}")
        for kind, example in change.removed:
            _out(f"    - {kind}: {example}")
    if decisions is None:
        return
    cited = cited_ids(decisions, before, after)
    for problem in cited.problems:
        _out(problem, sys.stderr)
    _out()
    _out(f"{_count(cited.decisions, 'decision')} read from {decisions}")
    if not cited.removed and not cited.unknown:
        _out("every rule id they cite exists in the new set")
    for rule_id, count in sorted(cited.removed.items()):
        _out(f"  {rule_id}: cited by {_count(count, 'finding')}, removed in the new set")
    for rule_id, count in sorted(cited.unknown.items()):
        _out(f"  {rule_id}: cited by {_count(count, 'finding')}, in neither set (hallucinated)")


def _short(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 1] + "…")
