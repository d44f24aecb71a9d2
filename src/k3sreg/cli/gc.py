"""`k3sreg garbage-collect` (Distribution's `registry garbage-collect`) and `k3sreg scrub`, on the storage a
config names. Both are safe beside a running `serve` (see storage.guard)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from k3sreg.cli.output import FOUND, fail, print_json
from k3sreg.errors import UsageError

if TYPE_CHECKING:
    from k3sreg.config import Settings
    from k3sreg.storage.manifests import ManifestStore

# Settings, the storage and the server's driver choice are imported when a command runs: importing this module
# must cost `k3sreg --help` nothing.

CONFIG = typer.Argument(..., help="Distribution-style config.yml naming the storage (as `registry serve CONFIG`).",
                        show_default=False)


def _open(config: Path) -> tuple[Settings, ManifestStore]:
    from k3sreg.config import load_settings
    from k3sreg.server.app import make_driver
    from k3sreg.storage.blobs import BlobStore
    from k3sreg.storage.manifests import ManifestStore

    settings = load_settings(config)
    if settings.storage.driver == "s3":
        raise UsageError("storage.s3: the s3 driver is not available in this version of k3sreg")
    fs = settings.storage.filesystem
    if fs is not None and not Path(fs.rootdirectory).is_dir():
        # A mistyped root would otherwise be created, and an empty store reported as clean.
        raise UsageError(f"storage.filesystem.rootdirectory: {fs.rootdirectory} is not a directory; name the "
                         "storage a registry wrote")
    return settings, ManifestStore(BlobStore(make_driver(settings)))


def _cached(settings: Settings) -> tuple[str, ...]:
    """The repository prefixes the pull-through cache owns ("" for Distribution's `proxy:`: every name)."""
    upstreams = settings.effective_upstreams
    if settings.proxy_upstream is not None:
        return ("",)
    return tuple(f"{u.name}/" for u in upstreams)


def _duration(text: str) -> float:
    from k3sreg.config.units import duration_seconds

    try:
        return duration_seconds(text)
    except ValueError as e:
        raise UsageError(f"--delay {text}: {e}") from None


def garbage_collect(
    config: Path = CONFIG,
    dry_run: bool = typer.Option(False, "--dry-run", "-d", help="Do everything except remove anything."),
    delete_untagged: bool = typer.Option(False, "--delete-untagged", "-m", help="Delete manifests no tag "
                                         "reaches (an index's children and referrers stay with what they belong "
                                         "to), then the blobs only they needed."),
    delay: str = typer.Option("0s", "--delay", help="Keep what was uploaded, mounted or relied on more recently "
                              "than this (e.g. 1h), as the background collection of `serve` does."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document instead of "
                                 "Distribution's lines."),
) -> None:
    """Remove blobs no manifest needs (Distribution's `registry garbage-collect`, same flags and output).

    Safe while `k3sreg serve` runs on the same storage: no read-only mode is needed. The counts and bytes
    freed are logged on stderr.
    """
    from k3sreg.storage import gc, paths
    from k3sreg.storage.driver import PathNotFound, own_locks

    seconds = _duration(delay)
    _, store = _open(config)
    driver = store.driver
    driver.put_content(paths.GC_CLOCK, b"", sync=False)  # a lock lives in a directory that exists
    try:
        lock = own_locks(driver).try_lock(paths.GC_LOCK)
    except PathNotFound:
        lock = None
    if lock is None:
        fail("another garbage collection is running on this storage (a `serve` worker with storage.gc, or "
             "another garbage-collect); run this again once it ends", FOUND)
    out = sys.stdout

    def emit(line: str) -> None:
        out.write(line + "\n")

    try:
        collector = gc.Collector(store, delay=seconds, delete_untagged=delete_untagged, dry_run=dry_run,
                                 emit=None if as_json else emit)
        report = collector.run()
        if not dry_run:
            gc.save_report(driver, report)
    finally:
        lock.release()
    if as_json:
        print_json(report.to_json())
    out.flush()
    for problem in report.problems:
        typer.echo(f"warning: {problem}", err=True)
    typer.echo(report.line(), err=True)


def scrub(
    config: Path = CONFIG,
    quarantine: bool = typer.Option(False, "--quarantine", help="Move corrupt blobs to _quarantine/ in the "
                                    "storage: a cached one is fetched again on its next pull, a pushed one "
                                    "shows as missing (push it again)."),
    rate: str = typer.Option("0", "--rate", help="Read at most this many bytes a second (e.g. 20MiB); 0: as "
                             "fast as the disk goes."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
) -> None:
    """Read every blob again and check its digest; check that each manifest has what it needs and each tag
    names a manifest. Exit 1 when anything is wrong.

    The pull-through cache's repositories may lack blobs (they are fetched when asked for): that is not
    reported.
    """
    from k3sreg.config.units import size_bytes
    from k3sreg.storage import scrub as scrubbing

    try:
        limit = size_bytes(rate)
    except ValueError as e:
        raise UsageError(f"--rate {rate}: {e}") from None
    settings, store = _open(config)
    prefixes = _cached(settings)
    scrubber = scrubbing.Scrubber(store, rate=limit, quarantine=quarantine,
                                  lazy=lambda repo: any(repo.startswith(p) for p in prefixes))
    report = scrubber.run()
    scrubbing.save_report(store.driver, report)
    if as_json:
        print_json(report.to_json())
    else:
        for problem in report.problems():
            typer.echo(problem)
        typer.echo(report.line().removeprefix("scrub: "))
    if report.problem_count:
        raise typer.Exit(FOUND)
