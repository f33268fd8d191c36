"""The `quoteguard` command line: one typer app; sub-commands live in sibling modules.

Packages that build on the pipeline (the Celery workers) add their commands through the
`quoteguard.commands` entry-point group, so `pipeline` never imports them.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from pipeline.cli import calibration, moderate, policy, sim

app = typer.Typer(
    name="quoteguard",
    help="Grounding-enforcement moderation: cited rules and verbatim quotes, checked in code.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
moderate.register(app)
calibration.register(app)
app.add_typer(sim.app, name="sim", help="The simulated OpenAI-compatible model.")
policy.register(app)

for plugin in entry_points(group="quoteguard.commands"):
    try:
        plugin.load()(app)
    except (ImportError, AttributeError) as exc:
        # A broken optional plugin must not take the core commands down with it.
        sys.stderr.write(f"quoteguard: commands of {plugin.name!r} unavailable: {exc}\n")
