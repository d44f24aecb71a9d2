"""`k3sreg doctor`: why a node does not pull through the registry, on this node or on every node at once.

Output: on a terminal, a table of node x check (worst status of each) and the problems with their fixes; piped,
a header line, one tab-separated line per finding (node, check, status, subject, seen, fix) and a summary;
`--json` one document (`ok`, `summary`, `elapsed_seconds`, `nodes`, `findings` with node, check, status,
subject, seen, fix). Exit status: 0 when nothing failed (warnings allowed), 1 when a check failed or a node
was unreachable, 2 for bad options or an unreadable inventory.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from k3sreg.cli.output import FOUND, print_json
from k3sreg.cli.sshopts import ssh_options
from k3sreg.errors import UsageError

if TYPE_CHECKING:
    from k3sreg.doctor import RegistryTarget, Report
    from k3sreg.k3s.rollout import SshOptions

PASSWORD_ENV = "K3SREG_DOCTOR_PASSWORD"
_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red"}
_MARK = {"pass": "ok", "warn": "warn", "fail": "FAIL"}


@ssh_options
def doctor(
    inventory: Path | None = typer.Option(None, "--inventory", "-i", help="Check every node of this inventory "
                                          "over SSH (ours or k3s-ansible's); without it, this machine."),
    node: list[str] = typer.Option([], "--node", "-n", help="Only this node of the inventory; repeatable."),
    parallel: int = typer.Option(8, "--parallel", "-p", min=1, help="Nodes checked at the same time."),
    image: list[str] = typer.Option([], "--image", help="Resolve this image through the node's endpoints, as "
                                    "containerd would (e.g. docker.io/library/busybox:latest); repeatable."),
    registry: str | None = typer.Option(None, "--registry", help="Also check the registry itself at this URL "
                                        "(catalog, free space, upstreams, cache)."),
    username: str = typer.Option("", "--username", help=f"User for --registry; the password comes from "
                                 f"${PASSWORD_ENV} or --password-stdin."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the --registry password from "
                                        "standard input."),
    ca_file: Path | None = typer.Option(None, "--ca-file", help="CA certificate that --registry's is issued by."),
    insecure: bool = typer.Option(False, "--insecure", help="Do not verify --registry's certificate."),
    push_test: bool = typer.Option(False, "--push-test", help="Push a tiny blob to --registry and delete it."),
    registries: Path | None = typer.Option(None, "--registries", "-r", help="Read this registries.yaml instead "
                                           "of K3s's (this machine only)."),
    timeout: float = typer.Option(3.0, "--timeout", min=0.1, help="Seconds for each network check."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout instead of tables."),
    *, ssh: SshOptions,
) -> None:
    """Check registries.yaml, what K3s made of it, and every endpoint from the node; each fail says the fix."""
    from k3sreg.doctor import Options, run_inventory, run_local

    for name in image:
        _check_image(name)
    if inventory is None and node:
        raise UsageError("--node picks nodes of an inventory: add --inventory")
    if inventory is not None and registries is not None:
        raise UsageError("--registries reads a file on this machine; with --inventory each node's own is read")
    if push_test and registry is None:
        raise UsageError("--push-test pushes to the registry of --registry: add it")
    options = Options(tuple(image), timeout, _target(registry, username, password_stdin, ca_file, insecure,
                                                      push_test), str(registries.absolute()) if registries else None)
    if inventory is None:
        report = _run(as_json, [], lambda progress: run_local(options))
    else:
        from k3sreg.k3s.rollout import load_inventory, select_nodes

        nodes = select_nodes(load_inventory(inventory), node)
        report = _run(as_json, [n.name for n in nodes],
                      lambda progress: run_inventory(nodes, ssh, options, parallel, progress))
    _print(report, as_json)
    if not report.ok:
        sys.exit(FOUND)


def _check_image(name: str) -> None:
    from k3sreg.oci.digest import is_digest
    from k3sreg.oci.names import is_valid_tag, name_problem
    from k3sreg.oci.reference import parse_image

    try:
        ref = parse_image(name)
    except ValueError:
        ref = None
    if ref is None or name_problem(ref.repository) is not None or not (
            is_digest(ref.digest) if ref.digest else is_valid_tag(ref.tag)):
        raise UsageError(f"--image {name!r} is not an image reference (such as docker.io/library/busybox:1.36)")


def _target(url: str | None, username: str, password_stdin: bool, ca_file: Path | None, insecure: bool,
            push_test: bool) -> RegistryTarget | None:
    from urllib.parse import urlsplit

    from k3sreg.doctor import RegistryTarget

    if url is None:
        return None

    if not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
        raise UsageError(f"--registry {url!r}: write the URL with its scheme and host (https://HOST:PORT)")
    password = ""
    if password_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
    elif username:
        password = os.environ.get(PASSWORD_ENV, "")
    if bool(username) != bool(password):
        raise UsageError(f"--username needs a password (${PASSWORD_ENV} or --password-stdin), and the other way round")
    if ca_file is not None and not ca_file.is_file():
        raise UsageError(f"--ca-file {ca_file}: no such file")
    return RegistryTarget(url.rstrip("/"), username, password, str(ca_file) if ca_file else None, insecure, push_test)


def _run(as_json: bool, names: list[str],
         job: Callable[[Callable[[str, str], None] | None], Coroutine[Any, Any, Report]]) -> Report:
    """Run `job`, with live progress per node on a terminal's stderr."""
    import asyncio

    if as_json or not sys.stderr.isatty() or not names:
        return asyncio.run(job(None))
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)

    with Progress(SpinnerColumn(), TextColumn("{task.fields[node]:<16}"), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, TaskID] = {n: bar.add_task("waiting", node=n, total=None) for n in names}

        def progress(node: str, step: str) -> None:
            bar.update(tasks[node], description=step)

        return asyncio.run(job(progress))


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    summary = " · ".join(f"{k} {v}" for k, v in report.summary().items()) + f" · {report.elapsed:.1f} s"
    if sys.stdout.isatty():
        _rich(report, summary)
        return
    typer.echo("\t".join(("node", "check", "status", "subject", "seen", "fix")))
    for f in report.findings:
        cells = (f.node, f.check, f.status, f.subject, f.seen, f.fix)
        typer.echo("\t".join(c.replace("\t", " ").replace("\n", " ") or "-" for c in cells))
    typer.echo(summary)


def _rich(report: Report, summary: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from k3sreg.doctor import CHECKS
    from k3sreg.doctor.model import REGISTRY_ROW, problems

    out = Console()
    run = report.checks_run()
    for title, rows, columns in (
            ("k3sreg doctor", [n for n in report.nodes if n.node != REGISTRY_ROW],
             [c for c in run if not c.startswith("registry.")]),
            ("registry", [n for n in report.nodes if n.node == REGISTRY_ROW],
             [c for c in run if c.startswith("registry.")])):
        if not rows or not columns:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("node" if title != "registry" else "url")
        for check in columns:
            table.add_column(CHECKS[check], justify="center")
        for node in rows:
            cells = []
            for check in columns:
                worst = node.worst(check)
                cells.append(f"[{_STYLE[worst]}]{_MARK[worst]}[/]" if worst else "-")
            table.add_row(escape(node.node if title != "registry" else node.address), *cells)
        out.print(table)
    found = problems(report.findings)
    if found:
        details = Table(title="problems", title_justify="left", show_lines=True)
        for column in ("node", "check", "", "what was seen", "fix"):
            details.add_column(column, overflow="fold")
        for f in found:
            details.add_row(escape(f.node), escape(f.check), f"[{_STYLE[f.status]}]{f.status}[/]",
                            escape(f"{f.subject}: {f.seen}" if f.subject else f.seen), escape(f.fix))
        out.print(details)
    out.print(summary)
