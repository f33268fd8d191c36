"""The `quoteguard` command line: one typer app; sub-commands live in sibling modules.

Rule for every command module (here, in `workers.cli` and in any plugin): **import heavy
modules inside the command.** At module top a command module imports only typer, the
standard library, `pipeline.cli.options` and `pipeline.defaults`; the pipeline's stages,
pydantic, openai, instructor, numpy, scipy, sklearn, matplotlib, celery, redis, starlette,
jinja2... are imported inside the command function that needs them. So `quoteguard --help`
and the start of a command that needs none of them cost about `import typer, rich`
(benchmarks/bench_startup.py measures it; tests/test_cli_startup.py holds every command
module to the rule).

A new command module adds its module path to `COMMANDS`; it defines `register(app)`, which
adds its commands (`app.command(...)`) or a sub-app (`app.add_typer(...)`). Packages that
build on the pipeline (the Celery workers) add theirs through the `quoteguard.commands`
entry-point group, so `pipeline` never imports them.
"""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import entry_points

import typer

#: Modules whose `register(app)` adds their commands, in help order.
COMMANDS = (
    "pipeline.cli.moderate",
    "pipeline.cli.calibration",
    "pipeline.cli.sim",
    "pipeline.cli.policy",
)
PLUGIN_GROUP = "quoteguard.commands"

app = typer.Typer(
    name="quoteguard",
    help="Grounding-enforcement moderation: cited rules and verbatim quotes, checked in code.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Plain help and usage errors: typer's rich rendering imports rich.markdown, markdown-it
    # and pygments, which alone cost about as much as `import typer, rich`.
    rich_markup_mode=None,
)

for _module in COMMANDS:
    importlib.import_module(_module).register(app)

for plugin in entry_points(group=PLUGIN_GROUP):
    try:
        plugin.load()(app)
    except (ImportError, AttributeError) as exc:
        # A broken optional plugin must not take the core commands down with it.
        sys.stderr.write(f"quoteguard: commands of {plugin.name!r} unavailable: {exc}\n")
