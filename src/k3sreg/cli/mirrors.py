"""`k3sreg mirrors`: write, check, render and explain a node's registries.yaml."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from k3sreg.cli.output import FOUND, new_app
from k3sreg.errors import UsageError

if TYPE_CHECKING:
    from k3sreg.k3s.explain import Plan
    from k3sreg.k3s.render import RenderOptions

# The k3s package (YAML, the registries.yaml model) is imported inside each command, so that other commands of
# the CLI (`k3sreg serve`...) do not pay for it at start.

app = new_app("registries.yaml: write it, validate it, render containerd's hosts.toml as K3s does, "
              "explain a pull.")

_NO_DEFAULT = typer.Option(False, "--disable-default-endpoint",
                           help="As K3s's --disable-default-registry-endpoint: no fallback to the registry itself.")
_EMBEDDED = typer.Option(False, "--embedded-registry", help="As K3s's --embedded-registry (Spegel).")
_FLAVOR = typer.Option("k3s", "--flavor", help="k3s or rke2 (header line, default paths, supervisor port).")
_DATA_DIR = typer.Option(None, "--data-dir", help="The agent's --data-dir (default /var/lib/rancher/<flavor>).")


def _options(no_default: bool, embedded: bool, flavor: str, data_dir: str | None) -> RenderOptions:
    from k3sreg.k3s.render import PROGRAMS, RenderOptions

    if flavor not in PROGRAMS:
        raise UsageError(f"--flavor must be one of {', '.join(PROGRAMS)}, not {flavor!r}")
    return RenderOptions(no_default_endpoint=no_default, embedded_registry=embedded, program=flavor,
                         data_dir=data_dir)


def _read(path: Path) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {path}: {e}") from e


@app.command("validate")
def validate_cmd(
    file: Path = typer.Argument(..., help="The registries.yaml to check ('-' for stdin)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    no_default: bool = _NO_DEFAULT,
    embedded: bool = _EMBEDDED,
    flavor: str = _FLAVOR,
) -> None:
    """Report every problem at once (key path, severity, what happens on the node, the fix); exit 1 on errors."""
    from k3sreg.k3s.decode import decode_text
    from k3sreg.k3s.findings import has_errors
    from k3sreg.k3s.validate import validate_decoded

    findings = validate_decoded(decode_text(_read(file)), _options(no_default, embedded, flavor, None))
    if as_json:
        typer.echo(json.dumps({"file": str(file), "errors": sum(f.severity == "error" for f in findings),
                               "warnings": sum(f.severity == "warning" for f in findings),
                               "findings": [f.as_dict() for f in findings]}, indent=2))
    else:
        for f in findings:
            where = f"{file}:{f.location()}" if f.location() else str(file)
            typer.echo(f"{where}: {f.severity}: {f.path}: {f.message}")
            typer.echo(f"    fix: {f.fix}")
        errors = sum(f.severity == "error" for f in findings)
        typer.echo(f"{file}: {errors} error(s), {len(findings) - errors} warning(s)", err=True)
    if has_errors(findings):
        raise typer.Exit(FOUND)


@app.command("render")
def render_cmd(
    file: Path = typer.Argument(..., help="The registries.yaml ('-' for stdin)."),
    out: Path = typer.Option(..., "--out", "-o", help="The certs.d directory to write into."),
    no_default: bool = _NO_DEFAULT,
    embedded: bool = _EMBEDDED,
    flavor: str = _FLAVOR,
    data_dir: str | None = _DATA_DIR,
    containerd_auth: bool = typer.Option(False, "--containerd-auth",
                                         help="Also print the config.toml stanzas carrying the credentials."),
    containerd_version: int = typer.Option(2, "--containerd-config-version",
                                           help="2 (containerd 1.7) or 3 (containerd 2.x) for --containerd-auth."),
) -> None:
    """Write <out>/<host>/hosts.toml exactly as K3s would; remove only directories an earlier render made."""
    from k3sreg.k3s.apply import apply_hosts
    from k3sreg.k3s.decode import decode_text, load_registries
    from k3sreg.k3s.render import containerd_auth_toml, render
    from k3sreg.k3s.validate import validate_decoded

    options = _options(no_default, embedded, flavor, data_dir)
    text = _read(file)
    registries = load_registries(text, str(file))
    result = render(registries, options)
    for f in validate_decoded(decode_text(text), options):
        if f.severity == "error":
            typer.echo(f"warning: {file}:{f.location()}: {f.path}: {f.message}", err=True)
    for note in result.notes:
        typer.echo(f"{flavor}: {note}", err=True)
    try:
        applied = apply_hosts(out, result.files, flavor)
    except OSError as e:
        raise UsageError(f"cannot write into {out}: {e.strerror or e} (--out names the certs.d directory)") from None
    for rel in applied.removed:
        typer.echo(f"removed {out / rel}")
    for rel in applied.written:
        typer.echo(f"wrote {out / rel}")
    for rel in applied.unchanged:
        typer.echo(f"unchanged {out / rel}")
    if containerd_auth:
        if containerd_version not in (2, 3):
            raise UsageError("--containerd-config-version must be 2 or 3")
        snippet = containerd_auth_toml(registries, containerd_version)
        typer.echo(f"# containerd config.toml (version {containerd_version}) stanzas for the credentials:")
        typer.echo(snippet or "# (no configs entry has an auth block)")


def _print_plan(plan: Plan) -> None:
    typer.echo(f"image {plan.image}  (registry {plan.registry})")
    typer.echo(f"hosts file: {plan.hosts_file or 'none: containerd uses its built-in default'}")
    for title, hops in (("resolve the tag (each host in turn until one answers 2xx)", plan.resolve),
                        ("fetch manifests and blobs by digest (each request tries the hosts in this order)",
                         plan.fetch)):
        typer.echo(f"\n{title}:")
        for n, hop in enumerate(hops, start=1):
            typer.echo(f"  {n}. {hop.url}")
            typer.echo(f"     via {hop.source}; TLS: {hop.tls}; auth: {hop.auth}")
            if hop.rewritten_by:
                typer.echo(f"     repository rewritten to {hop.repository} by {hop.rewritten_by!r}")
            nxt = ("connection/TLS error, 404 or any status >= 400 -> next host" if n < len(hops)
                   else "any failure ends the pull (the error shown is the first host's)")
            typer.echo(f"     {nxt}")
    for note in plan.notes:
        typer.echo(f"\nnote: {note}")
    for warning in plan.warnings:
        typer.echo(f"\nwarning: {warning}")


@app.command("explain")
def explain_cmd(
    image: str = typer.Argument(..., help="Image reference, e.g. nginx:1.27 or ghcr.io/org/app@sha256:..."),
    config: Path | None = typer.Option(None, "--config", "-c", help="registries.yaml to render first."),
    hosts_dir: Path | None = typer.Option(None, "--hosts-dir", help="An existing certs.d directory instead."),
    no_default: bool = _NO_DEFAULT,
    embedded: bool = _EMBEDDED,
    flavor: str = _FLAVOR,
    runtime: str = typer.Option("k3s", "--runtime", help="k3s (K3s containerd build) or containerd (upstream)."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON."),
) -> None:
    """The ordered requests containerd makes for IMAGE; warns when the last hop is a public registry."""
    from k3sreg.k3s.decode import load_registries
    from k3sreg.k3s.explain import RUNTIMES, explain
    from k3sreg.k3s.render import render

    if runtime not in RUNTIMES:
        raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}")
    if (config is None) == (hosts_dir is None):
        raise UsageError("give exactly one of --config FILE or --hosts-dir DIR")
    registries = None
    if config is not None:
        registries = load_registries(_read(config), str(config))
        files = render(registries, _options(no_default, embedded, flavor, None)).files
    else:
        assert hosts_dir is not None
        files = {str(p.relative_to(hosts_dir)): p.read_text(encoding="utf-8", errors="replace")
                 for p in hosts_dir.glob("*/hosts.toml")}
    try:
        plan = explain(image, files, registries, runtime)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if as_json:
        typer.echo(json.dumps(plan.as_dict(), indent=2))
    else:
        _print_plan(plan)


@app.command("init")
def init_cmd(
    endpoint: list[str] = typer.Option([], "--endpoint", "-e", help="Mirror endpoint, in order (repeat)."),
    scheme: str = typer.Option("", "--scheme", show_default=False,
                               help="http or https for endpoints given without a scheme (default: from "
                               "--from-config's http.tls, else as K3s: https unless loopback)."),
    mirror: list[str] = typer.Option([], "--mirror", "-m", help="Registry to mirror, e.g. docker.io or '*'."),
    from_config: Path | None = typer.Option(None, "--from-config",
                                            help="Mirror every upstream of this k3sreg config.yml."),
    insecure_skip_verify: bool = typer.Option(False, "--insecure-skip-verify",
                                              help="Do not check certificates of https endpoints."),
    ca_file: str = typer.Option("", "--ca-file", help="CA bundle (path on the node) for https endpoints."),
    cert_file: str = typer.Option("", "--cert-file", help="Client certificate (path on the node)."),
    key_file: str = typer.Option("", "--key-file", help="Client key (path on the node)."),
    username: str = typer.Option("", "--username", help="Registry user for the endpoints."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    password_file: Path | None = typer.Option(None, "--password-file", help="Read the password from a file."),
    password_env: str | None = typer.Option(None, "--password-env", metavar="NAME",
                                            help="Read the password from environment variable NAME (never give "
                                                 "it on the command line: other users see process arguments)."),
    rewrite: list[str] = typer.Option([], "--rewrite", help="PATTERN=REPLACEMENT (Go RE2), repeat."),
    flavor: str = _FLAVOR,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Write a valid, minimal, commented registries.yaml."""
    from k3sreg.k3s.generate import InitSpec, generate, scheme_notes

    _options(False, False, flavor, None)
    password = ""
    if sum((password_stdin, password_file is not None, password_env is not None)) > 1:
        raise UsageError("give one of --password-stdin, --password-file or --password-env")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif password_file is not None:
        password = _read(password_file).rstrip("\r\n")
    elif password_env is not None:
        import os

        if not os.environ.get(password_env):
            raise UsageError(f"--password-env {password_env}: that environment variable is not set or empty")
        password = os.environ[password_env]
    rewrites = {}
    for item in rewrite:
        pattern, sep, replacement = item.partition("=")
        if not sep:
            raise UsageError(f"--rewrite {item!r}: write PATTERN=REPLACEMENT")
        rewrites[pattern] = replacement
    mirrors = list(mirror)
    reason = ""
    if from_config is not None:
        from k3sreg.config import load_settings

        settings = load_settings(from_config)
        mirrors += [u.name for u in settings.effective_upstreams]
        if not scheme:
            tls = settings.http.tls is not None and settings.http.tls.enabled
            scheme = "https" if tls else "http"
            reason = f"{from_config}: " + ("http.tls is set, so k3sreg serves HTTPS" if tls
                                           else "no http.tls, so k3sreg serves plain HTTP")
    spec = InitSpec(endpoints=endpoint, mirrors=mirrors, insecure_skip_verify=insecure_skip_verify,
                    ca_file=ca_file, cert_file=cert_file, key_file=key_file, username=username,
                    password=password, rewrites=rewrites, program=flavor, scheme=scheme, scheme_reason=reason)
    text = generate(spec)
    for note in scheme_notes(spec):
        typer.echo(f"note: {note}", err=True)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
            if password:
                output.chmod(0o600)
        except OSError as e:
            raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
        typer.echo(f"wrote {output}", err=True)
