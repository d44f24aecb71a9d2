"""Shared helpers for the CLI: the app factory, one-line errors, JSON, and the exit status scheme.

Exit status, the same for every command (README "Exit status"):

    0    done; nothing to report
    1    the command ran and found something, or failed under way: validation errors, nodes failed or out of
         sync, a write that failed
    2    usage or configuration error: bad arguments, an unreadable or invalid input file; nothing was done
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer

OK = 0
FOUND = 1
USAGE = 2
INTERRUPTED = 130


def new_app(help: str, **options: Any) -> typer.Typer:
    """A typer app with the CLI's common settings.

    Help is click's plain layout (`rich_markup_mode=None`): the rich layout imports rich on every `--help`
    (about as long as the rest of the start-up), and typer's rich layout has shown a `<bool>` value type
    after flags, which take no value.
    """
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                       context_settings={"help_option_names": ["-h", "--help"]}, **options)


def fail(message: str, code: int = USAGE) -> NoReturn:
    """Print `error: message` on stderr and exit with `code` (a usage error unless told otherwise)."""
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on stdout."""
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
