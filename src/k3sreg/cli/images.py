"""`k3sreg images sync | export | import | push | ls`: image lists into a registry, across an air gap, from CI.

Exit status: 0 when everything arrived, 1 when something failed under way (a blob, a manifest, a corrupted
bundle), 2 for bad input (an invalid list, option or file: nothing was copied). Progress: rich bars on a
terminal (stderr), JSON lines with `--json` (stdout), else one line per image tagged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from k3sreg.cli.output import FOUND, new_app
from k3sreg.errors import UsageError

if TYPE_CHECKING:
    from k3sreg.images.copy import Summary
    from k3sreg.images.endpoint import Connection

T = TypeVar("T")

app = new_app("Copy images: sync image lists into a registry, carry them across an air gap in one file, load "
              "them there, push CI archives, list a registry.")

LIST = typer.Option(..., "--file", "-f", help="The image list (k3sreg YAML, hauler Images, or skopeo sync YAML).")
JOBS = typer.Option(8, "--jobs", "-j", min=1, help="Blobs copied at the same time.")
JSON = typer.Option(False, "--json", help="One JSON object per line on stdout: every event, for CI.")
PLAIN_HTTP = typer.Option(False, "--plain-http", help="Speak plain HTTP to registries that are not on a "
                          "loopback address (loopback ones always are).")
USERNAME = typer.Option("", "--username", "-u", help="User for the --to registry; the password comes from "
                        "K3SREG_PASSWORD or --password-stdin.")
PASSWORD_STDIN = typer.Option(False, "--password-stdin", help="Read the --to registry's password from stdin.")
CA = typer.Option(None, "--ca", help="CA certificate (PEM) that signs the --to registry's certificate.")
INSECURE = typer.Option(False, "--insecure", help="Do not verify the --to registry's TLS certificate.")
CERT = typer.Option(None, "--cert", help="Client certificate (PEM) for the --to registry (mTLS).")
KEY = typer.Option(None, "--key", help="The client certificate's private key.")
SCOPED = typer.Option(False, "--scoped", help="Keep the source registry in repository names "
                      "(docker.io/library/nginx instead of library/nginx).")
PLATFORM_INDEX = typer.Option("keep", "--platform-index", help="With a platform filter: 'keep' the source index "
                              "(its digest) with only the chosen platforms' content, or 'filter': write a new index "
                              "listing only them (a new digest; registries that refuse partial indexes take it).")


def _connection(username: str, password_stdin: bool, plain_http: bool, ca: Path | None, insecure: bool,
                cert: Path | None, key: Path | None) -> Connection:
    from k3sreg.images.endpoint import Connection

    password = os.environ.get("K3SREG_PASSWORD", "")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    if username and not password:
        raise UsageError("--username needs a password: set K3SREG_PASSWORD or use --password-stdin")
    return Connection(plain_http, username, password, str(ca) if ca else None, insecure,
                      str(cert) if cert else None, str(key) if key else None)


def _platform_index(value: str) -> bool:
    if value not in ("keep", "filter"):
        raise UsageError(f"--platform-index takes 'keep' or 'filter', not {value!r}")
    return value == "filter"


def _run(as_json: bool, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(reporter)` in an event loop with the right progress display."""
    import asyncio
    import contextlib

    from k3sreg.cli.imagesout import Bars, reporter

    shown = reporter(as_json)
    with shown if isinstance(shown, Bars) else contextlib.nullcontext():
        return asyncio.run(work(shown))


def _finish(summary: Summary, as_json: bool) -> None:
    from k3sreg.cli.imagesout import summary_line

    if not as_json:
        typer.echo(summary_line(summary.to_json()), err=True)
        for line in summary.failed:
            typer.echo(f"error: {line}", err=True)
    if summary.failed:
        sys.exit(FOUND)


@app.command("sync")
def sync(
    file: Path = LIST,
    to: str = typer.Option(..., "--to", "-t", help="A registry URL (http://10.0.0.5:30500) or oci:DIR."),
    jobs: int = JOBS, as_json: bool = JSON, plain_http: bool = PLAIN_HTTP, scoped: bool = SCOPED,
    platform_index: str = PLATFORM_INDEX, username: str = USERNAME, password_stdin: bool = PASSWORD_STDIN,
    ca: Path | None = CA, insecure: bool = INSECURE, cert: Path | None = CERT, key: Path | None = KEY,
) -> None:
    """Copy the images of a list into a registry or an OCI layout: present ones skipped, the rest resumed."""
    from k3sreg.images.endpoint import open_target
    from k3sreg.images.lists import load_list
    from k3sreg.images.sync import sync_list

    images = load_list(file)
    for warning in images.warnings:
        typer.echo(f"warning: {warning}", err=True)
    new_index = _platform_index(platform_index)
    connection = _connection(username, password_stdin, plain_http, ca, insecure, cert, key)

    async def work(reporter: Any) -> Summary:
        target = open_target(to, connection, scoped)
        return await sync_list(images, target, jobs=jobs, plain_http=plain_http, new_index=new_index,
                               reporter=reporter)

    _finish(_run(as_json, work), as_json)


@app.command("export")
def export(
    file: Path = LIST,
    output: Path = typer.Option(..., "--output", "-o", help="The bundle to write (images.tar.zst)."),
    jobs: int = JOBS, as_json: bool = JSON, plain_http: bool = PLAIN_HTTP, platform_index: str = PLATFORM_INDEX,
    level: int = typer.Option(3, "--level", min=1, max=19, help="zstd compression level."),
) -> None:
    """Write the images of a list into one file: an OCI layout in a zstd-compressed tar, each blob once."""
    from k3sreg.images.airgap import export_list
    from k3sreg.images.lists import load_list

    images = load_list(file)
    for warning in images.warnings:
        typer.echo(f"warning: {warning}", err=True)
    new_index = _platform_index(platform_index)

    async def work(reporter: Any) -> Summary:
        return await export_list(images, output, jobs=jobs, plain_http=plain_http, new_index=new_index,
                                 level=level, reporter=reporter)

    _finish(_run(as_json, work), as_json)


@app.command("import")
def import_(
    bundle: Path = typer.Argument(..., help="A bundle written by `k3sreg images export`."),
    to: str | None = typer.Option(None, "--to", "-t", help="The registry to push into (URL), or oci:DIR."),
    k3s: Path | None = typer.Option(None, "--k3s", help="Also write one tarball per image here, for K3s to "
                                    "import at start (/var/lib/rancher/k3s/agent/images)."),
    image: list[str] = typer.Option([], "--image", help="Only images matching this pattern (shell-style, on "
                                    "the full name); repeatable."),
    jobs: int = JOBS, as_json: bool = JSON, plain_http: bool = PLAIN_HTTP, scoped: bool = SCOPED,
    username: str = USERNAME, password_stdin: bool = PASSWORD_STDIN, ca: Path | None = CA,
    insecure: bool = INSECURE, cert: Path | None = CERT, key: Path | None = KEY,
) -> None:
    """Verify every blob of a bundle, then push blobs, manifests and tags (and/or write K3s tarballs)."""
    from k3sreg.images.airgap import import_bundle
    from k3sreg.images.endpoint import open_target

    if to is None and k3s is None:
        raise UsageError("say where the images go: --to URL (a registry), --k3s DIR (K3s tarballs), or both")
    if not bundle.is_file():
        raise UsageError(f"{bundle}: no such bundle file")
    connection = _connection(username, password_stdin, plain_http, ca, insecure, cert, key)

    async def work(reporter: Any) -> Summary:
        target = open_target(to, connection, scoped) if to else None
        return await import_bundle(bundle, target, k3s=k3s, only=image, jobs=jobs, reporter=reporter)

    _finish(_run(as_json, work), as_json)


@app.command("push")
def push(
    archive: Path = typer.Argument(..., help="An OCI layout directory, an oci-archive or a docker-archive tar."),
    to: str = typer.Option(..., "--to", "-t", help="Where: URL/REPOSITORY:TAG, e.g. 10.0.0.5:30500/team/app:1."),
    ref: str | None = typer.Option(None, "--ref", help="Which image of an archive that holds several (its name "
                                   "or tag)."),
    jobs: int = JOBS, as_json: bool = JSON, plain_http: bool = PLAIN_HTTP,
    username: str = USERNAME, password_stdin: bool = PASSWORD_STDIN, ca: Path | None = CA,
    insecure: bool = INSECURE, cert: Path | None = CERT, key: Path | None = KEY,
) -> None:
    """Push an image archive (what buildah, podman or docker save wrote) to a registry, without a daemon."""
    from k3sreg.images.archives import open_archive
    from k3sreg.images.copy import Copier
    from k3sreg.images.endpoint import split_destination
    from k3sreg.images.model import Image
    from k3sreg.images.remote import RegistryTarget

    url, repository, tag = split_destination(to, plain_http)
    connection = _connection(username, password_stdin, plain_http, ca, insecure, cert, key)
    found = open_archive(archive, ref)

    async def work(reporter: Any) -> Summary:
        target = RegistryTarget(connection.client(url), scoped=True)
        try:
            return await Copier(target, jobs, reporter).run([Image(repository, tag, found.root, found.source)])
        finally:
            await target.close()

    _finish(_run(as_json, work), as_json)


@app.command("ls")
def ls(
    registry: str = typer.Argument(..., help="The registry (URL or host:port), optionally /REPOSITORY."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    plain_http: bool = PLAIN_HTTP, username: str = USERNAME, password_stdin: bool = PASSWORD_STDIN,
    ca: Path | None = CA, insecure: bool = INSECURE, cert: Path | None = CERT, key: Path | None = KEY,
) -> None:
    """List repositories, tags, digests, platforms and sizes of a registry (or of one repository)."""
    import asyncio

    from k3sreg.cli.output import print_json
    from k3sreg.images.endpoint import base_url
    from k3sreg.images.listing import list_registry

    scheme, _, rest = registry.rpartition("://")
    host, _, repository = rest.partition("/")
    url = base_url(f"{scheme}://{host}" if scheme else host, plain_http)
    connection = _connection(username, password_stdin, plain_http, ca, insecure, cert, key)

    async def work() -> list[Any]:
        client = connection.client(url)
        try:
            return await list_registry(client, [repository] if repository else None)
        finally:
            await client.close()

    rows = asyncio.run(work())
    if as_json:
        print_json({"registry": url, "images": [r.to_json() for r in rows]})
        return
    header = ("REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE")
    lines = [(r.repository, r.tag, r.digest[:19], ",".join(r.platforms) or "-", _size(r.size)) for r in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(*header, title=url, title_justify="left")
        for line in lines:
            table.add_row(*line)
        Console().print(table)
        return
    for line in [header, *lines]:
        typer.echo("\t".join(line))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
