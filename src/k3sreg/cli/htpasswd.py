"""`k3sreg htpasswd set | delete | list | check`: the users of an htpasswd file, with bcrypt as Distribution needs.

The password is read from standard input (`--password-stdin`, first line) or asked for on the terminal, never
taken from the command line, where other users of the machine could see it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from k3sreg.cli.output import fail
from k3sreg.errors import K3sregError

app = typer.Typer(help="Add, change, remove and list the users of an htpasswd file (bcrypt).", no_args_is_help=True)

FILE = typer.Argument(..., help="The htpasswd file (auth.htpasswd.path); made 0600 when new.")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        fail("no terminal to ask the password on; pipe it in with --password-stdin")
    first = typer.prompt("Password", hide_input=True)
    if typer.prompt("Again", hide_input=True) != first:
        fail("the two passwords differ; nothing was changed")
    return str(first)


@app.command("set")
def set_cmd(
    file: Path = FILE,
    user: str = typer.Argument(..., help="The user name."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from standard input."),
    cost: int = typer.Option(10, "--cost", min=4, max=31, help="bcrypt cost (each +1 doubles the time)."),
) -> None:
    """Add USER, or change USER's password."""
    from k3sreg.auth.users import check_user, set_user

    try:
        check_user(user)
        new = set_user(file, user, _password(password_stdin), cost)
    except K3sregError as exc:
        fail(str(exc))
    typer.echo(f"{'added' if new else 'updated'} {user} in {file}")


@app.command("delete")
def delete_cmd(file: Path = FILE, user: str = typer.Argument(..., help="The user name.")) -> None:
    """Remove USER (exit 1 when there is no such user)."""
    from k3sreg.auth.users import delete_user

    try:
        found = delete_user(file, user)
    except K3sregError as exc:
        fail(str(exc))
    if not found:
        fail(f"{file} has no user {user!r}")
    typer.echo(f"deleted {user} from {file}")


@app.command("list")
def list_cmd(file: Path = FILE) -> None:
    """Print the user names, one a line."""
    from k3sreg.auth.users import list_users

    try:
        for name in list_users(file):
            typer.echo(name)
    except K3sregError as exc:
        fail(str(exc))


@app.command("check")
def check_cmd(file: Path = FILE) -> None:
    """Report lines Distribution and k3sreg cannot use (non-bcrypt hashes, no colon); exit 1 if any."""
    from k3sreg.auth.htpasswd import parse_htpasswd

    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}")
    found = parse_htpasswd(data, str(file))
    for problem in found.problems:
        typer.echo(problem)
    if any("only bcrypt" in p or "no ':'" in p for p in found.problems):
        sys.exit(1)
    typer.echo(f"{file}: {len(found.entries)} users, all usable")
