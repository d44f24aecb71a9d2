"""`k3sreg certs init | issue | show | rotate-token-key`: a CA for the cluster, the certificates the registry and
nodes need, and the signing keys of the built-in token service.

Keys are written 0600 and never printed. Errors are one line on stderr (exit 1).
"""

from __future__ import annotations

from pathlib import Path

import typer

from k3sreg.cli.output import fail, print_json
from k3sreg.errors import K3sregError

app = typer.Typer(help="Make a CA, issue server and node client certificates, show certificates.",
                  no_args_is_help=True)

DIR = typer.Option(Path("certs"), "--dir", "-d", help="Directory of the CA and the certificates.")
FORCE = typer.Option(False, "--force", help="Replace files that exist.")


@app.command("init")
def init_cmd(
    directory: Path = DIR,
    name: str = typer.Option("k3sreg CA", "--name", help="Common name of the CA."),
    days: int = typer.Option(3650, "--days", min=1, help="Days the CA is valid."),
    force: bool = FORCE,
) -> None:
    """Make a CA (ECDSA P-256): DIR/ca.crt for every node to trust, DIR/ca.key (0600) to issue with."""
    from k3sreg.auth.certs import make_ca, write_pair

    try:
        ca = make_ca(name, days)
        write_pair(ca, directory / "ca.crt", directory / "ca.key", force)
    except K3sregError as exc:
        fail(str(exc))
    typer.echo(f"CA written: {directory / 'ca.crt'} (key {directory / 'ca.key'}, 0600), valid {days} days")


@app.command("issue")
def issue_cmd(
    hosts: list[str] = typer.Option([], "--host", "-H",
                                    help="DNS name or IP the registry is reached by (node IPs for the NodePort); "
                                         "repeatable."),
    local: bool = typer.Option(False, "--local", help="Also cover localhost, 127.0.0.1 and ::1."),
    no_registry_localhost: bool = typer.Option(False, "--no-registry-localhost",
                                               help="Leave out registry.localhost (included by default)."),
    client: str | None = typer.Option(None, "--client", help="Issue a node client certificate (mTLS) named NAME "
                                                             "instead of a server certificate."),
    signer: str | None = typer.Option(None, "--signer", help="Issue a token-signing certificate named NAME "
                                                             "(auth.token.builtin.signingcert)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Base name of the files in DIR (default: registry, "
                                                            "or the client/signer name)."),
    directory: Path = DIR,
    days: int = typer.Option(365, "--days", min=1, help="Days the certificate is valid (at most the CA's)."),
    force: bool = FORCE,
) -> None:
    """Issue a certificate signed by the CA in DIR: the registry's server certificate by default."""
    from k3sreg.auth.certinfo import sans
    from k3sreg.auth.certs import issue_client, issue_server, issue_signer, load_ca, server_hosts, write_pair

    if client is not None and signer is not None:
        fail("--client and --signer exclude each other; issue one certificate at a time")
    if (client is not None or signer is not None) and (hosts or local):
        fail("--host and --local are for server certificates; leave them out with --client or --signer")
    try:
        ca = load_ca(directory / "ca.crt", directory / "ca.key")
        if client is not None:
            issued, kind, base = issue_client(ca, client, days), "client", out or client
        elif signer is not None:
            issued, kind, base = issue_signer(ca, signer, days), "token-signing", out or signer
        else:
            covered = server_hosts(hosts, not no_registry_localhost, local)
            issued, kind, base = issue_server(ca, covered, days), "server", out or "registry"
        if "/" in base or base in ("", ".", "..", "ca"):
            fail(f"--out {base!r}: give a plain file name other than 'ca'")
        write_pair(issued, directory / f"{base}.crt", directory / f"{base}.key", force)
    except K3sregError as exc:
        fail(str(exc))
    dns, ips = sans(issued.cert)
    names = ", ".join(dns + ips)
    typer.echo(f"{kind} certificate written: {directory / f'{base}.crt'} (key {directory / f'{base}.key'}, 0600)"
               + (f" for {names}" if names else ""))


@app.command("show")
def show_cmd(
    files: list[Path] = typer.Argument(..., help="PEM (or DER) certificate files."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
) -> None:
    """Print each certificate's subject, issuer, SANs, roles and expiry (a key in the same file is not shown)."""
    from k3sreg.auth.certinfo import describe, read_certificates

    shown = []
    try:
        for path in files:
            shown += [{"file": str(path), **describe(cert)} for cert in read_certificates(path)]
    except K3sregError as exc:
        fail(str(exc))
    if as_json:
        print_json(shown)
        return
    for item in shown:
        state = "EXPIRED" if item["expired"] else ("expires soon" if item["expires_soon"] else "valid")
        typer.echo(f"{item['file']}: {item['subject']}")
        typer.echo(f"  issuer:  {item['issuer']}")
        typer.echo(f"  valid:   {item['not_before']} .. {item['not_after']} ({item['days_left']} days left, {state})")
        if item["dns_names"] or item["ip_addresses"]:
            typer.echo(f"  names:   {', '.join(item['dns_names'] + item['ip_addresses'])}")
        typer.echo(f"  roles:   {', '.join(item['roles']) or '-'}; key {item['key']}")
        typer.echo(f"  sha256:  {item['sha256']}")


@app.command("rotate-token-key")
def rotate_cmd(
    config: Path = typer.Option(..., "--config", "-c", help="The registry's config.yml (auth.token.builtin)."),
) -> None:
    """Give the built-in token service a new signing key: running servers sign with it from their next token;
    tokens signed with the previous key keep working until they expire."""
    from k3sreg.auth.signing import KeyRing
    from k3sreg.config import load_settings

    try:
        settings = load_settings(config)
        token = settings.auth.token if settings.auth is not None else None
        if token is None or token.builtin is None:
            fail(f"{config}: no auth.token.builtin; only the built-in token service has keys to rotate")
        fs = settings.storage.filesystem
        path = token.builtin.keyring_path(str(fs.rootdirectory) if fs is not None else None)
        if path is None:
            fail(f"{config}: auth.token.builtin.signingkey is your own key; replace that file to rotate it")
        kid = KeyRing(path, token.builtin.expiration).rotate()
    except K3sregError as exc:
        fail(str(exc))
    typer.echo(f"new signing key {kid} in {path}; tokens signed before keep working until they expire")
