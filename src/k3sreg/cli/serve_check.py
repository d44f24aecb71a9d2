"""`k3sreg serve --check`: what `serve` would refuse at start, or what it would serve, without serving.

    load_settings(check_files=True) ─► settings this version refuses (check_supported) ─► TLS through OpenSSL
    ─► the listen address ─► every problem at once (exit 2), or the summary (exit 0)

Like `nginx -t`, the check does not take the port: the instance being reconfigured usually holds it, and the
check must not fail because of it (nor take the port away from it). It checks what can fail without the
port: the host resolves to an address of this machine (bound with port 0), a port below the unprivileged
range needs CAP_NET_BIND_SERVICE, and a unix socket's directory must exist and be writable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from k3sreg.cli.output import USAGE, print_json
from k3sreg.errors import ConfigError

if TYPE_CHECKING:
    from k3sreg.config import Settings

_CAP_NET_BIND_SERVICE = 10


def run_check(path: Path | None, workers: int, as_json: bool) -> None:
    """Check the config at `path` (None: the embedded defaults) as `serve` would, and print the outcome.

    Problems: one `error:` line each on stderr (ConfigError), or `{"ok": false, ...}` with --json; exit 2."""
    from k3sreg.config import load_settings

    source = str(path) if path is not None else None
    try:
        settings = load_settings(path, check_files=True)
        found = problems(settings)
    except ConfigError as e:
        found = list(e.problems)
    if found:
        if as_json:
            print_json({"ok": False, "config": source, "problems": found})
            raise typer.Exit(USAGE)
        raise ConfigError(found)
    facts = summary(settings, workers)
    if as_json:
        print_json({"ok": True, "config": source, **facts})
        return
    typer.echo(f"{source or 'the embedded defaults'}: OK, `k3sreg serve` would start with it")
    for key, text in describe(facts):
        typer.echo(f"{key:<9} {text}")


def problems(settings: Settings) -> list[str]:
    """Everything in `settings` that `serve` would refuse at start, besides the port being taken."""
    from k3sreg.server.app import check_supported

    found: list[str] = []
    try:
        check_supported(settings)
    except ConfigError as e:
        found += e.problems
    for problem in (tls_problem(settings), address_problem(settings)):
        if problem is not None:
            found.append(problem)
    return found


def tls_problem(settings: Settings) -> str | None:
    """Why OpenSSL refuses the `http.tls` files (what only it sees, past the checks of the settings), or None."""
    from k3sreg.server.run import ssl_context

    try:
        ssl_context(settings)
    except (OSError, ValueError) as e:
        return f"http.tls: OpenSSL cannot use the certificate and key: {e}"
    return None


def address_problem(settings: Settings) -> str | None:
    """Why `http.addr` cannot be listened on by this process, found without taking the port; None when it can."""
    import socket

    from k3sreg.server.run import tcp_socket

    addr = settings.http.addr
    if settings.http.net == "unix":
        folder = Path(addr).parent
        if not folder.is_dir():
            return f"http.addr {addr}: the directory {folder} does not exist; create it or change http.addr"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"http.addr {addr}: this user cannot create a socket in {folder}; change http.addr or its owner"
        return None
    host, port = settings.http.bind()
    try:
        tcp_socket(host, 0).close()
    except socket.gaierror as e:
        return f"http.addr {addr}: cannot resolve {host} ({e.strerror}); write an IP address or a known name"
    except OSError as e:
        return (f"http.addr {addr}: {host} is not an address of this machine ({e.strerror}); write one of its "
                f"addresses, or ':{port}' for every interface")
    start = _read_int("/proc/sys/net/ipv4/ip_unprivileged_port_start", 1024)
    if 0 < port < start and not _has_capability(_CAP_NET_BIND_SERVICE):
        return (f"http.addr {addr}: ports below {start} need CAP_NET_BIND_SERVICE, which this process lacks; "
                f"use a port from {start} up (such as :5000), or grant the capability")
    return None


def summary(settings: Settings, workers: int) -> dict[str, Any]:
    """What `serve` would run with `settings`, as plain data (the --json document, less `ok` and `config`)."""
    return {
        "listen": _listen(settings),
        "tls": _tls(settings),
        "storage": _storage(settings),
        "upstreams": upstreams(settings),
        "auth": _auth(settings),
        "workers": workers,
        "draintimeout": settings.http.drain,
        "log": {"level": settings.log.level, "formatter": settings.log.formatter, "stream": "stdout",
                "accesslog": not settings.log.accesslog.disabled},
        "health": _health(settings),
    }


def upstreams(settings: Settings) -> list[dict[str, Any]]:
    """Each upstream: its registry name, URL (no credentials), the requests routed to it, and how it is reached
    (direct, through an HTTP(S)_PROXY of the environment, or offline)."""
    from yarl import URL

    from k3sreg.client.proxyenv import ProxyEnv

    proxies = ProxyEnv.from_env(os.environ)
    proxy = settings.proxy_upstream
    out = []
    for upstream in settings.effective_upstreams:
        url = URL(upstream.url)
        default = proxy is not None and upstream.name == proxy.name
        routes = [f"ns={upstream.name}", f"/v2/{upstream.name}/..."]
        if default:
            routes.append("every request without ns or whose ns no other upstream claims")
        out.append({"name": upstream.name, "url": str(url.with_user(None)), "routes": routes, "default": default,
                    "network": "offline" if upstream.offline else proxies.describe(url)})
    return out


def describe(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary as (key, text) lines for a terminal."""
    listen = facts["listen"]
    lines = [("listen", listen["url"] + (f", and {listen['also']}" if listen.get("also") else ""))]
    tls = facts["tls"]
    lines.append(("tls", "off" if tls is None else f"{tls['certificate']} (key {tls['key']}, minimum "
                  f"{tls['minimumtls']}" + (f", client certificates from {', '.join(tls['clientcas'])})"
                                            if tls["clientcas"] else ")")))
    storage = facts["storage"]
    flags = [text for key, text in (("delete", "deletes allowed"), ("readonly", "read-only")) if storage[key]]
    if storage["gc"]:
        gc = storage["gc"]
        flags.append(f"garbage collection every {gc['interval']:g}s, keeping {gc['delay']:g}s"
                     + (", untagged manifests too" if gc["deleteuntagged"] else "") + (" (dry run)" if gc["dryrun"]
                                                                                        else ""))
    if storage["scrub"]:
        flags.append(f"scrub every {storage['scrub']['interval']:g}s at {storage['scrub']['rate']} bytes/s"
                     + (", quarantining" if storage["scrub"]["quarantine"] else ""))
    where = f"{storage['driver']} {storage['rootdirectory']}" if "rootdirectory" in storage else storage["driver"]
    lines.append(("storage", where + (f" ({', '.join(flags)})" if flags else "")))
    for upstream in facts["upstreams"]:
        lines.append(("upstream", f"{upstream['name']} {upstream['url']}: {' or '.join(upstream['routes'])}; "
                                  f"{upstream['network']}"))
    if not facts["upstreams"]:
        lines.append(("upstream", "none (a plain registry: images are pushed in)"))
    auth = facts["auth"]
    detail = ", ".join(f"{k} {v}" for k, v in auth.items() if k != "kind" and v not in ("", None, False))
    lines.append(("auth", "none: whoever reaches the port may push and pull" if auth["kind"] == "none"
                  else auth["kind"] + (f" ({detail})" if detail else "")))
    lines.append(("workers", str(facts["workers"])))
    lines.append(("drain", f"{facts['draintimeout']:g}s for requests in flight on SIGTERM (http.draintimeout)"))
    log = facts["log"]
    lines.append(("log", f"{log['formatter']} on {log['stream']}, level {log['level']}, access log "
                         f"{'on' if log['accesslog'] else 'off'}"))
    for check in facts["health"]:
        lines.append(("health", f"{check['check']} every {check['interval']:g}s, unhealthy after "
                                f"{check['threshold'] + 1} failures: /debug/health answers 503"))
    return lines


def _listen(settings: Settings) -> dict[str, Any]:
    from k3sreg.cli.serve import listen_address
    from k3sreg.server.run import tcp_socket

    if settings.http.net == "unix":
        return {"net": "unix", "addr": settings.http.addr, "url": f"unix:{settings.http.addr}"}
    scheme = "https" if settings.http.tls is not None and settings.http.tls.certificate else "http"
    host, port = settings.http.bind()
    with tcp_socket(host, 0) as probe:
        where, note = listen_address(probe, port)
    return {"net": "tcp", "addr": settings.http.addr, "url": f"{scheme}://{where}",
            "also": note.removeprefix(" and ") or None}


def _tls(settings: Settings) -> dict[str, Any] | None:
    tls = settings.http.tls
    if tls is None or not tls.certificate:
        return None
    return {"certificate": tls.certificate, "key": tls.key, "clientcas": list(tls.clientcas),
            "minimumtls": tls.minimumtls}


def _storage(settings: Settings) -> dict[str, Any]:
    out: dict[str, Any] = {"driver": settings.storage.driver}
    if settings.storage.filesystem is not None:
        out["rootdirectory"] = str(settings.storage.filesystem.rootdirectory.resolve())
    out["delete"] = settings.storage.delete.enabled
    out["readonly"] = readonly = settings.storage.maintenance.readonly.enabled
    gc, scrub = settings.storage.gc, settings.storage.scrub
    out["gc"] = None if gc is None or not gc.enabled or readonly else {
        "interval": gc.interval, "delay": gc.delay, "deleteuntagged": gc.deleteuntagged, "dryrun": gc.dryrun}
    out["scrub"] = None if scrub is None or not scrub.enabled or readonly else {
        "interval": scrub.interval, "rate": scrub.rate, "quarantine": scrub.quarantine}
    return out


def _auth(settings: Settings) -> dict[str, Any]:
    auth = settings.auth
    if auth is None:
        return {"kind": "none"}
    if auth.htpasswd is not None:
        return {"kind": "htpasswd", "realm": auth.htpasswd.realm, "path": auth.htpasswd.path}
    if auth.token is not None:
        return {"kind": "token", "realm": auth.token.realm, "service": auth.token.service,
                "issuer": auth.token.issuer, "builtin": auth.token.builtin is not None}
    assert auth.silly is not None
    return {"kind": "silly", "realm": auth.silly.realm, "service": auth.silly.service}


def _health(settings: Settings) -> list[dict[str, Any]]:
    health = settings.health
    checks: list[tuple[str, Any]] = []
    if health.storagedriver.enabled:
        name = "storagedriver (lists)" if settings.storage.maintenance.readonly.enabled else \
            "storagedriver (writes and removes a probe)"
        checks.append((name, health.storagedriver))
    checks += [(f"file {c.file}", c) for c in health.file]
    checks += [(f"http {c.uri}", c) for c in health.http]
    checks += [(f"tcp {c.addr}", c) for c in health.tcp]
    return [{"check": name, "interval": c.interval, "threshold": c.threshold} for name, c in checks]


def _read_int(path: str, default: int) -> int:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return default


def _has_capability(bit: int) -> bool:
    """Whether this process has capability `bit` in its effective set (Linux /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> bit & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0
