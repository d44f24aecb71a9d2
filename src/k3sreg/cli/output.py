"""Shared output helpers for the CLI: one-line errors, JSON."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `error: message` on stderr and exit with `code`."""
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
