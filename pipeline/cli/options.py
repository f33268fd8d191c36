"""Command-line options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="OpenAI-compatible endpoint (vLLM, Ollama...).")
]
ConcurrencyOpt = Annotated[int | None, typer.Option("--concurrency", "-c", min=1)]
PoliciesOpt = Annotated[Path | None, typer.Option("--policies", help="Policy files directory.")]
ProfilesOpt = Annotated[
    Path | None, typer.Option("--profiles", help="Calibration profiles directory.")
]
