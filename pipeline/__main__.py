"""`python -m pipeline` runs the quoteguard CLI."""

from pipeline.cli import app

app()
