"""`k3sreg`: the top-level command. Each sub-command lives in its own module and registers here."""

from __future__ import annotations

import sys

import typer

from k3sreg import __version__
from k3sreg.cli import certs, htpasswd, mirrors, nodes, serve
from k3sreg.cli.output import fail
from k3sreg.errors import ConfigError, K3sregError

app = typer.Typer(
    name="k3sreg",
    help="A registry and toolkit that gives a K3s cluster its own image supply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("serve")(serve.serve)
app.add_typer(nodes.app, name="nodes")
app.add_typer(mirrors.app, name="mirrors")
app.add_typer(certs.app, name="certs")
app.add_typer(htpasswd.app, name="htpasswd")


@app.command("version")
def version() -> None:
    """Print the k3sreg version."""
    typer.echo(__version__)


def run() -> None:
    """Console-script entry point: domain errors become one line on stderr, never a traceback."""
    try:
        app()
    except ConfigError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        sys.exit(2)
    except K3sregError as e:
        fail(str(e))
    except KeyboardInterrupt:
        sys.exit(130)
