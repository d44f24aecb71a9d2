"""`k3sreg nodes plan | apply | status | rollback`: registries.yaml on every node, over SSH.

Live progress (stderr) and the summary table (stdout) go through rich on a terminal; when stdout is piped,
the table is plain tab-separated lines, one per node, after a header line; `--json` prints one JSON document
on stdout instead. Exit status: 0 when every node is fine, 1 when any node failed (or, for `status`, is not in
sync), 2 for bad input (an invalid registries.yaml is refused before any node is contacted).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from k3sreg.cli.output import FOUND, new_app, print_json
from k3sreg.cli.sshopts import ssh_options
from k3sreg.errors import UsageError

if TYPE_CHECKING:
    from k3sreg.k3s.rollout import Node, NodeResult, SshOptions

# The rollout machinery (asyncssh, cryptography, rich) is imported inside the commands: importing it here
# would cost every other k3sreg command a second at start.

app = new_app("Roll registries.yaml out to every node over SSH: planned, idempotent, restarting only what "
              "changed.")

INVENTORY = typer.Option(..., "--inventory", "-i", help="Our YAML inventory, or a k3s-ansible one (YAML/INI).")
REGISTRIES = typer.Option(..., "--registries", "-r", help="The registries.yaml to roll out.")
NODES = typer.Option([], "--node", "-n", help="Only this node (name or address); repeatable.")
PARALLEL = typer.Option(4, "--parallel", "-p", min=1, help="Nodes handled at the same time.")
ROLLING = typer.Option(False, "--rolling", help="One node at a time, servers first; stop at the first failure.")
DRY_RUN = typer.Option(False, "--dry-run", help="Show what would happen; change nothing.")
RESTART_TIMEOUT = typer.Option(120, "--restart-timeout", min=1, help="Seconds to wait for the service to be active.")
JSON = typer.Option(False, "--json", help="One JSON document on stdout instead of tables.")
CERTS = typer.Option(None, "--certs", help="Directory holding the TLS files registries.yaml names (ca_file, "
                     "cert_file, key_file), by file name: each is installed at its path on every node first "
                     "(root, 0644; keys 0600).")

_STYLE = {"changed": "yellow", "would-change": "yellow", "unchanged": "green", "in-sync": "green",
          "failed": "bold red", "unreachable": "bold red", "skipped": "magenta", "differs": "yellow",
          "missing": "yellow", "rolled-back": "yellow", "would-roll-back": "yellow"}

_SUMMARY = {
    "plan": ("would-change", "unchanged", "failed"),
    "apply": ("changed", "unchanged", "failed"),
    "status": ("in-sync", "differs", "missing", "unreachable"),
    "rollback": ("rolled-back", "failed"),
}


def _nodes(inventory: Path, names: Sequence[str]) -> list[Node]:
    from k3sreg.k3s.rollout import load_inventory, select_nodes

    return select_nodes(load_inventory(inventory), names)


def _run(nodes: Sequence[Node], as_json: bool,
         job: Callable[[Callable[[str, str], None] | None], Coroutine[Any, Any, list[NodeResult]]]
         ) -> list[NodeResult]:
    """Run `job` with a live progress display on a terminal (nothing when --json or not a terminal)."""
    import asyncio

    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    if as_json or not err.is_terminal:
        return asyncio.run(job(None))
    with Progress(SpinnerColumn(), TextColumn("{task.fields[node]:<16}"), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, TaskID] = {n.name: bar.add_task("waiting", node=n.name, total=None) for n in nodes}

        def progress(node: str, step: str) -> None:
            bar.update(tasks[node], description=step)

        return asyncio.run(job(progress))


def _report(command: str, results: Sequence[NodeResult], as_json: bool, show_diff: bool = False,
            extra: dict[str, Any] | None = None) -> None:
    counts: Counter[str] = Counter(r.outcome for r in results)
    if as_json:
        print_json({"command": command, "ok": not _bad(command, results), "summary": dict(counts),
                    "nodes": [r.to_json() for r in results], **(extra or {})})
        return
    show_restart = command != "status"
    show_hot = any(r.hot for r in results)
    show_files = any(r.files for r in results)
    columns = ["node", "address", "role", "service", "result"]
    columns += ["restart"] * show_restart + ["hosts.toml"] * show_hot + ["TLS files"] * show_files + ["detail"]
    rows = []
    for r in results:
        row = [r.node, r.address, r.role or "?", r.service or "?", r.outcome]
        row += ["yes" if r.restart else "no"] * show_restart + [" ".join(r.hot)] * show_hot
        row += [" ".join(r.files)] * show_files
        row.append(r.reason or (r.action if r.action != "none" else ""))
        rows.append(row)
    keys = list(_SUMMARY[command]) + sorted(k for k in counts if k not in _SUMMARY[command])
    summary = " · ".join(f"{k} {counts.get(k, 0)}" for k in keys)
    diffs = [(f"{r.node} ({r.address}) {r.action if r.action != 'none' else r.outcome}", r.diff)
             for r in results if show_diff and r.diff]
    if sys.stdout.isatty():
        _rich_report(command, columns, rows, diffs, summary)
        return
    # Piped or redirected: plain lines that grep, cut and awk can read (a table would wrap word by word).
    for title, diff in diffs:
        typer.echo(f"--- {title}")
        typer.echo(diff.rstrip("\n"))
    typer.echo("\t".join(columns))
    for row in rows:
        typer.echo("\t".join(cell.replace("\t", " ").replace("\n", " ") or "-" for cell in row))
    typer.echo(summary)


def _rich_report(command: str, columns: list[str], rows: list[list[str]], diffs: list[tuple[str, str]],
                 summary: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.syntax import Syntax
    from rich.table import Table

    out = Console(soft_wrap=False)
    for title, diff in diffs:
        out.rule(title)
        out.print(Syntax(diff, "diff", theme="ansi_dark", background_color="default"))
    table = Table(title=f"k3sreg nodes {command}", title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    result = columns.index("result")
    for row in rows:
        cells = [escape(cell) for cell in row]
        cells[result] = f"[{_STYLE.get(row[result], '')}]{cells[result]}[/]"
        table.add_row(*cells)
    out.print(table)
    out.print(summary)


def _bad(command: str, results: Sequence[NodeResult]) -> bool:
    if command == "status":
        return any(r.outcome != "in-sync" for r in results)
    return any(r.outcome in ("failed", "unreachable") for r in results)


def _finish(command: str, results: Sequence[NodeResult]) -> None:
    if _bad(command, results):
        sys.exit(FOUND)


def _files(desired: bytes, certs: Path | None) -> Any:
    """The TLS files to install (`--certs`), or None."""
    if certs is None:
        return None
    from k3sreg.k3s.rollout.desired import node_files

    return node_files(desired, certs)


def _desired(registries: Path) -> bytes:
    from k3sreg.k3s.rollout.desired import load_desired

    content, warnings = load_desired(registries)
    for w in warnings:
        where = f"{registries}:{w.location()}" if w.location() else str(registries)
        typer.echo(f"warning: {where}: {w.path}: {w.message}", err=True)
    return content


@app.command("plan")
@ssh_options
def plan(
    inventory: Path = INVENTORY, registries: Path = REGISTRIES, node: list[str] = NODES,
    hot: bool = typer.Option(False, "--hot", help="Also plan the hosts.toml files in certs.d."),
    certs: Path | None = CERTS,
    as_json: bool = JSON, *, ssh: SshOptions,
) -> None:
    """For each node: missing, different (masked diff) or up to date, and whether a restart would follow."""
    from k3sreg.k3s.rollout import plan as plan_nodes
    from k3sreg.k3s.rollout.desired import hot_render

    desired = _desired(registries)
    render = hot_render(desired, str(registries)) if hot else None
    files = _files(desired, certs)
    nodes = _nodes(inventory, node)
    results = _run(nodes, as_json, lambda p: plan_nodes(nodes, desired, ssh, render, p, files=files))
    _report("plan", results, as_json, show_diff=True)
    _finish("plan", results)


@app.command("apply")
@ssh_options
def apply(
    inventory: Path = INVENTORY, registries: Path = REGISTRIES, node: list[str] = NODES,
    parallel: int = PARALLEL, rolling: bool = ROLLING, dry_run: bool = DRY_RUN,
    hot: bool = typer.Option(False, "--hot", help="Also write the rendered hosts.toml into containerd's certs.d, "
                             "and skip the restart: containerd reads them on every pull."),
    restart_timeout: int = RESTART_TIMEOUT, certs: Path | None = CERTS,
    as_json: bool = JSON, *, ssh: SshOptions,
) -> None:
    """Validate, then write registries.yaml where it differs (atomic, root 0600, backup kept); restart those nodes.

    With --certs, the CA and node certificates it names are installed first; a certificate changed alone
    restarts nothing (containerd reads it at each pull)."""
    from k3sreg.k3s.rollout import RolloutOptions
    from k3sreg.k3s.rollout import apply as apply_nodes
    from k3sreg.k3s.rollout.desired import hot_caveats, hot_render

    desired = _desired(registries)
    render = hot_render(desired, str(registries)) if hot else None
    for caveat in hot_caveats(desired) if hot else []:
        typer.echo(f"warning: {caveat}", err=True)
    files = _files(desired, certs)
    nodes = _nodes(inventory, node)
    opts = RolloutOptions(parallel=parallel, rolling=rolling, dry_run=dry_run, hot=hot,
                          restart_timeout=restart_timeout)
    results = _run(nodes, as_json, lambda p: apply_nodes(nodes, desired, ssh, opts, render, p, files))
    _report("apply", results, as_json, show_diff=dry_run, extra={"dry_run": dry_run, "hot": hot})
    _finish("apply", results)


@app.command("status")
@ssh_options
def status(
    inventory: Path = INVENTORY, registries: Path = REGISTRIES, node: list[str] = NODES,
    as_json: bool = JSON, *, ssh: SshOptions,
) -> None:
    """Drift report: which nodes carry the desired file, which differ, which are unreachable (exit 1 if any)."""
    from k3sreg.k3s.rollout import status as status_nodes

    desired = _desired(registries)
    nodes = _nodes(inventory, node)
    results = _run(nodes, as_json, lambda p: status_nodes(nodes, desired, ssh, p))
    _report("status", results, as_json, show_diff=True)
    _finish("status", results)


@app.command("rollback")
@ssh_options
def rollback(
    names: list[str] = typer.Argument(None, help="Nodes to roll back (name or address)."),
    all_nodes: bool = typer.Option(False, "--all", help="Roll back every node of the inventory."),
    inventory: Path = INVENTORY, parallel: int = PARALLEL, rolling: bool = ROLLING, dry_run: bool = DRY_RUN,
    restart_timeout: int = RESTART_TIMEOUT,
    as_json: bool = JSON, *, ssh: SshOptions,
) -> None:
    """Put back the registries.yaml that the last apply replaced on the named nodes, and restart them."""
    from k3sreg.k3s.rollout import RolloutOptions
    from k3sreg.k3s.rollout import rollback as rollback_nodes

    if not names and not all_nodes:
        raise UsageError("name the nodes to roll back, or pass --all")
    if names and all_nodes:
        raise UsageError("either name nodes or pass --all, not both")
    nodes = _nodes(inventory, names or [])
    opts = RolloutOptions(parallel=parallel, rolling=rolling, dry_run=dry_run, restart_timeout=restart_timeout)
    results = _run(nodes, as_json, lambda p: rollback_nodes(nodes, ssh, opts, p))
    _report("rollback", results, as_json)
    _finish("rollback", results)
