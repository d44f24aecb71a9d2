"""`k3sreg deploy render`: the Kubernetes manifests of k3sreg in K3s, and the nodes' registries.yaml.

Secret values (htpasswd, credentials taken out of config.yml) are written to files and pipes, never to a
terminal unless --show-secrets: a terminal's scrollback and screen are not a place for passwords.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from k3sreg.errors import UsageError

app = typer.Typer(help="Run k3sreg in K3s: render its manifests (and the nodes' registries.yaml).",
                  no_args_is_help=True)

NODE_PASSWORD_ENV = "K3SREG_NODE_PASSWORD"


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UsageError(f"{what} {path}: cannot read it: {reason}") from None


def _write(path: Path, text: str, private: bool) -> None:
    """Write atomically; 0600 when the text holds secrets."""
    from k3sreg.localfiles import write_file

    write_file(path, text.encode(), 0o600 if private else 0o644)


def _write_dir(out: Path, files: dict[str, str], secret_files: set[str]) -> None:
    from k3sreg.kube.render import RENDERED_BY

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        # Files an earlier render wrote for objects this one no longer has (a Secret no longer needed).
        if stale.name not in files and stale.read_text(errors="replace").startswith(RENDERED_BY):
            stale.unlink()
    for name, text in files.items():
        _write(out / name, text, name in secret_files)


@app.command("render")
def render_cmd(
    config: Path | None = typer.Option(None, "--config", "-c", help="The config.yml to run (default: filesystem "
                                       "storage on the PVC, :5000, storage health check)."),
    namespace: str = typer.Option("registry", "--namespace", "-n", help="Namespace of every object."),
    node_port: int = typer.Option(30500, "--node-port", help="NodePort the nodes pull from (30000-32767)."),
    host: str = typer.Option("registry.local", "--host", help="Ingress host name (HTTPS through Traefik)."),
    storage_size: str = typer.Option("20Gi", "--storage-size", help="Size of the PersistentVolumeClaim."),
    storage_class: str = typer.Option("local-path", "--storage-class", help="StorageClass of the claim."),
    htpasswd: Path | None = typer.Option(None, "--htpasswd", help="htpasswd file (bcrypt): auth on, in a Secret."),
    tls_secret: str | None = typer.Option(None, "--tls-secret", help="kubernetes.io/tls Secret for the Ingress "
                                          "(default: Traefik's own certificate)."),
    image: str | None = typer.Option(None, "--image", help="Image reference (default: the one `make image` "
                                     "tags, localhost/k3sreg:<version>)."),
    out: str | None = typer.Option(None, "--out", "-o", help="Directory for one file per object plus "
                                   "kustomization.yaml, or '-' for stdout (the default)."),
    k3s_manifests: Path | None = typer.Option(None, "--k3s-manifests", help="Write all objects to this one file, "
                                              "for /var/lib/rancher/k3s/server/manifests/ (K3s applies it)."),
    registries: Path | None = typer.Option(None, "--registries", help="Write the nodes' registries.yaml here "
                                           "(default with --out DIR: DIR/nodes/registries.yaml)."),
    node_endpoint: str | None = typer.Option(None, "--node-endpoint", help="What the nodes' containerd "
                                             "contacts (default http://127.0.0.1:<node-port>, on every node)."),
    node_ca_file: str | None = typer.Option(None, "--node-ca-file", help="CA file on the nodes, for an "
                                            "https --node-endpoint."),
    node_username: str | None = typer.Option(None, "--node-username", help="User the nodes pull as (password "
                                             f"from ${NODE_PASSWORD_ENV})."),
    no_traefik_config: bool = typer.Option(False, "--no-traefik-config", help="Leave out the HelmChartConfig "
                                           "that lifts Traefik's 60 s read timeout."),
    show_secrets: bool = typer.Option(False, "--show-secrets", help="Print secret values even to a terminal."),
) -> None:
    """Render the Namespace, PVC, ConfigMap, Secrets, Deployment, Service, Ingress and Traefik config.

    `k3sreg deploy render | kubectl apply -f -`, or `--out DIR` then `kubectl apply -k DIR`.
    """
    from k3sreg.kube.render import as_files, as_stream, render
    from k3sreg.kube.spec import DEFAULT_IMAGE, DeploySpec, check

    spec = DeploySpec(
        namespace=namespace, node_port=node_port, host=host, storage_size=storage_size,
        storage_class=storage_class, image=image or DEFAULT_IMAGE, tls_secret=tls_secret,
        htpasswd=_read(htpasswd, "--htpasswd") if htpasswd else None, traefik_config=not no_traefik_config,
        node_endpoint=node_endpoint, node_ca_file=node_ca_file, node_username=node_username,
        node_password=os.environ.get(NODE_PASSWORD_ENV) if node_username else None,
    )
    check(spec)
    raw, upstreams = _load_config(config)
    rendered = render(spec, raw, upstreams)
    to_stdout = out == "-" or (out is None and k3s_manifests is None)
    if to_stdout and rendered.has_secrets and sys.stdout.isatty() and not show_secrets:
        raise UsageError("the manifests hold secret values and stdout is a terminal: pipe them "
                         "(| kubectl apply -f -), write them with --out DIR, or add --show-secrets")
    stream = as_stream(rendered)
    if to_stdout:
        sys.stdout.write(stream)
    elif out is not None:
        files = as_files(rendered)
        secret_files = {name for name, text in files.items() if "\nkind: Secret\n" in text}
        _write_dir(Path(out), files, secret_files)
        registries = registries or Path(out) / "nodes" / "registries.yaml"
    if k3s_manifests is not None:
        _write(k3s_manifests, stream, rendered.has_secrets)
    if registries is not None:
        _write(registries, rendered.registries, bool(spec.node_password))
        typer.echo(f"nodes: {registries} (k3sreg nodes apply -i inventory.yaml -r {registries})", err=True)
    elif sys.stderr.isatty():
        typer.echo("nodes: add --registries FILE to write the registries.yaml for `k3sreg nodes apply`", err=True)


def _load_config(path: Path | None) -> tuple[dict[str, Any] | None, list[str]]:
    """The config file as data (validated as `serve` would) and the upstream names it pulls through."""
    if path is None:
        return None, []
    import yaml

    from k3sreg.config import load_settings

    settings = load_settings(path, env={})
    raw = yaml.safe_load(_read(path, "--config"))
    return raw, [u.name for u in settings.effective_upstreams]
