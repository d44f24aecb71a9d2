"""`k3sreg serve`: run the registry."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import typer

from k3sreg.config import Settings, load_settings
from k3sreg.errors import UsageError


def serve(
    config: Path | None = typer.Argument(None, help="Distribution-style config.yml (as `registry serve CONFIG`).",
                                         show_default=False),
    config_opt: Path | None = typer.Option(None, "--config", "-c", help="Distribution-style config.yml."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes sharing the port."),
) -> None:
    """Run the registry: OCI Distribution v1.1, a drop-in for Docker Distribution (registry:2).

    Without a config it listens on 127.0.0.1:5000 and stores under ./data.
    """
    if workers > 1:
        # Before prometheus_client is imported: each worker then writes its counters where /metrics sums them.
        metrics_dir = Path(tempfile.mkdtemp(prefix="k3sreg-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    from k3sreg.server.app import check_supported
    from k3sreg.server.run import bind, setup_logging, ssl_context
    from k3sreg.server.run import serve as run

    settings = load_settings(config_opt or config)
    check_supported(settings)
    setup_logging(settings)
    try:
        sock = bind(settings)
        ssl_context(settings)  # fail now, in one line, on unreadable certificates
    except OSError as e:
        reason = e.strerror or str(e)
        raise UsageError(f"cannot serve on {settings.http.addr}: {reason} (change http.addr, or stop what uses it)"
                         ) from None
    if settings.http.net == "unix":
        where = f"unix:{settings.http.addr}"
    else:
        host, port = sock.getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
        where = f"{shown}:{port}"
    scheme = "https" if settings.http.tls and settings.http.tls.certificate else "http"
    storage = (str(settings.storage.filesystem.rootdirectory.resolve()) if settings.storage.filesystem
               else settings.storage.driver)
    tls_flag = "" if scheme == "https" else " --dest-tls-verify=false"
    typer.echo(f"k3sreg listening on {scheme}://{where} (storage: {storage}, workers: {workers})", err=True)
    typer.echo(f"push an image:  skopeo copy{tls_flag} oci:./layout:1 docker://{where}/library/demo:1", err=True)
    _show_upstreams(settings)
    try:
        run(settings, sock, workers)
    finally:
        if workers > 1:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _show_upstreams(settings: Settings) -> None:
    """One line per upstream: its registry name, URL, whether it is reached through an HTTP(S)_PROXY, and for
    the `proxy:` upstream that it also takes what names no other upstream."""
    from yarl import URL

    from k3sreg.client.proxyenv import ProxyEnv

    proxies = ProxyEnv.from_env(os.environ)
    proxy = settings.proxy_upstream
    for upstream in settings.effective_upstreams:
        url = URL(upstream.url)
        route = "offline" if upstream.offline else proxies.describe(url)
        default = proxy is not None and upstream.name == proxy.name
        also = "; proxy: also every request without ns or whose ns no other upstream claims" if default else ""
        typer.echo(f"upstream {upstream.name}: {url.with_user(None)} ({route}{also})", err=True)
