"""`k3sreg`: the top-level command. Each sub-command lives in its own module and registers here.

Start-up cost matters (`k3sreg --help` on every node, in scripts): this module and the command modules import
only typer and k3sreg.errors at load time; each command imports what it needs (pydantic, aiohttp, asyncssh,
rich, yaml) when it runs. tests/unit/cli/test_startup.py keeps it so.
"""

from __future__ import annotations

import sys

import typer

from k3sreg import __version__
from k3sreg.cli import certs, deploy, doctor, gc, htpasswd, images, mirrors, nodes, serve
from k3sreg.cli.output import FOUND, INTERRUPTED, USAGE, fail, new_app
from k3sreg.errors import ConfigError, K3sregError, UsageError

app = new_app("A registry and toolkit that gives a K3s cluster its own image supply.", name="k3sreg")
app.command("serve")(serve.serve)
app.command("garbage-collect")(gc.garbage_collect)
app.command("scrub")(gc.scrub)
app.add_typer(nodes.app, name="nodes")
app.add_typer(mirrors.app, name="mirrors")
app.add_typer(certs.app, name="certs")
app.add_typer(htpasswd.app, name="htpasswd")
app.add_typer(deploy.app, name="deploy")
app.add_typer(images.app, name="images")
app.command("doctor")(doctor.doctor)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"k3sreg {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", "-V", is_eager=True, callback=_print_version,
                                 help="Print the k3sreg version and exit."),
) -> None:
    # The options of `k3sreg` itself (the help text is the app's); the sub-commands do the work.
    del version


@app.command("version")
def version() -> None:
    """Print the k3sreg version."""
    typer.echo(__version__)


def run() -> None:
    """Console-script entry point: domain errors become one line on stderr, never a traceback.

    Exit status follows the scheme in k3sreg.cli.output: 2 for usage and configuration errors, 1 for a
    command that ran into failures, 130 when interrupted.
    """
    try:
        app()
    except ConfigError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        sys.exit(USAGE)
    except UsageError as e:
        fail(str(e), USAGE)
    except K3sregError as e:
        fail(str(e), FOUND)
    except OSError as e:
        # A file or socket the command needed failed under it (disk full, permissions): still one line.
        where = f"{e.filename}: " if e.filename else ""
        fail(f"{where}{e.strerror or e}", FOUND)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED)
