"""`k3sreg serve`: run the registry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from k3sreg.errors import UsageError

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from k3sreg.config import Settings

# Everything else (settings, the server, logging, sockets) is imported when `serve` runs: importing this
# module must cost `k3sreg --help` nothing.


def serve(
    config: Path | None = typer.Argument(None, help="Distribution-style config.yml (as `registry serve CONFIG`).",
                                         show_default=False),
    config_opt: Path | None = typer.Option(None, "--config", "-c", help="Distribution-style config.yml."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help="Processes sharing the port."),
    check: bool = typer.Option(False, "--check", help="Check the config as serve would at start (without taking "
                               "the port), print what it would serve, and exit: 0 it would start, 2 it would not."),
    as_json: bool = typer.Option(False, "--json", help="With --check: print one JSON document."),
) -> None:
    """Run the registry: OCI Distribution v1.1, a drop-in for Docker Distribution (registry:2).

    Without a config it listens on 127.0.0.1:5000 and stores under ./data. Logs go to stdout.
    """
    if config is not None and config_opt is not None:
        raise UsageError(f"the config file is given twice ({config} and --config {config_opt}); give one")
    if as_json and not check:
        raise UsageError("--json goes with --check; the log of a running server is JSON with log.formatter: json")
    if check:
        from k3sreg.cli.serve_check import run_check

        run_check(config_opt or config, workers, as_json)
        return
    from k3sreg.config import load_settings

    settings = load_settings(config_opt or config, check_files=True)
    metrics_dir = None
    if workers > 1:
        import tempfile

        # Before prometheus_client is imported: each worker then writes its counters where /metrics sums them.
        metrics_dir = Path(tempfile.mkdtemp(prefix="k3sreg-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        status = _serve(settings, workers)
    finally:
        if metrics_dir is not None:
            import shutil

            shutil.rmtree(metrics_dir, ignore_errors=True)
    if status:
        raise typer.Exit(status)


def _serve(settings: Settings, workers: int) -> int:
    from k3sreg.cli.serve_check import tls_problem, upstreams
    from k3sreg.server.app import check_supported
    from k3sreg.server.run import bind, bind_debug, setup_logging
    from k3sreg.server.run import serve as run

    check_supported(settings)
    # The files were checked with the settings; this catches what only OpenSSL sees.
    problem = tls_problem(settings)
    if problem is not None:
        raise UsageError(problem)
    setup_logging(settings)
    try:
        sock = bind(settings)
    except OSError as e:
        reason = e.strerror or str(e)
        raise UsageError(f"cannot serve on {settings.http.addr}: {reason} (change http.addr, or stop what uses it)"
                         ) from None
    prometheus = settings.http.debug.prometheus if settings.http.debug else None
    try:
        debug = bind_debug(settings)
    except OSError as e:
        sock.close()
        addr = settings.http.debug.addr if settings.http.debug else ""
        raise UsageError(f"cannot serve the debug listener on {addr}: {e.strerror or e} (change http.debug.addr, "
                         "or stop what uses it)") from None
    where, note = listen_address(sock) if settings.http.net == "tcp" else (f"unix:{settings.http.addr}", "")
    scheme = "https" if settings.http.tls and settings.http.tls.certificate else "http"
    storage = (str(settings.storage.filesystem.rootdirectory.resolve()) if settings.storage.filesystem
               else settings.storage.driver)
    tls_flag = "" if scheme == "https" else " --dest-tls-verify=false"
    tls_flag += " --dest-creds USER" if settings.auth is not None else ""
    say = _announcer(settings)
    say(f"k3sreg listening on {scheme}://{where}{note} (storage: {storage}, workers: {workers})")
    say(f"push an image:  skopeo copy{tls_flag} oci:./layout:1 docker://{where}/library/demo:1")
    for upstream in upstreams(settings):
        # The `proxy:` upstream also takes what names no other upstream.
        also = "; proxy: also every request without ns or whose ns no other upstream claims" \
            if upstream["default"] else ""
        say(f"upstream {upstream['name']}: {upstream['url']} ({upstream['network']}{also})")
    if settings.auth is not None:
        from k3sreg.auth.setup import describe

        say(f"auth: {describe(settings.auth, settings.access)}")
    if settings.http.tls is not None and settings.http.tls.certificate:
        from k3sreg.server.tlsreload import expiry_warning

        warning = expiry_warning(settings.http.tls.certificate)
        if warning:
            say(f"warning: {warning}")
    if debug is not None:
        dwhere, dnote = listen_address(debug)
        shows = f"metrics at {prometheus.path}" if prometheus and prometheus.enabled else \
            "nothing (http.debug.prometheus.enabled is false)"
        say(f"debug listener on http://{dwhere}{dnote}: {shows}")
    if settings.web.enabled:
        say(f"web page: {scheme}://{where}{settings.web.path}")
    return run(settings, sock, workers, debug)


def _announcer(settings: Settings) -> Callable[[str], None]:
    """Where the start-up lines go: plain lines on stdout with the log, or log records when the log is JSON."""
    if settings.log.formatter == "text":
        return typer.echo
    import logging

    return logging.getLogger("k3sreg.serve").info


def listen_address(sock: socket.socket, port: int | None = None) -> tuple[str, str]:
    """(host:port to reach a TCP listening socket from this machine, a note when it listens on every interface).

    `http.addr: :5000` binds the wildcard address: the registry is reachable from other machines too, which
    the start-up line must say rather than show only the loopback address. `port` replaces the socket's own
    (for `serve --check`, which binds the address on port 0).
    """
    import socket

    host, bound = sock.getsockname()[:2]
    port = bound if port is None else port
    if host == "0.0.0.0":
        return f"127.0.0.1:{port}", f" and every IPv4 interface, port {port}"
    if host == "::":
        v6only = sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        families = "IPv6" if v6only else "IPv4 and IPv6"
        return f"127.0.0.1:{port}" if not v6only else f"[::1]:{port}", f" and every {families} interface, port {port}"
    return (f"[{host}]" if ":" in host else host) + f":{port}", ""
