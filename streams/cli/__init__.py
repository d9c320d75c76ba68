"""The `rtba` command line: `main` is the entry point (pyproject's `rtba` script)."""

from streams.cli.main import cli, main

__all__ = ["cli", "main"]
