"""Run the application: bind once, then serve from one process or from N forked workers on that socket.

    parent: bind(addr) ──fork──► worker 1 ─┐
                       ──fork──► worker 2 ─┼─ accept() on the same listening socket (the kernel spreads
                       ...                 ┘  connections); workers share state only through the storage
The parent restarts a worker that dies. On SIGINT/SIGTERM it closes its copy of the socket and passes SIGTERM
on; each worker drains (protocol.py) and the parent waits for them all. SIGHUP is passed on too: each worker then
reloads its TLS certificate (server/tlsreload.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
import sys
import time

from k3sreg.config import Settings
from k3sreg.config.values import split_listen_address
from k3sreg.server import protocol, tlsreload
from k3sreg.server.app import create_app, debug_app
from k3sreg.server.logformat import ACCESS_LOG_FORMAT, make_formatter

log = logging.getLogger("k3sreg.server")
_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO, "debug": logging.DEBUG}


def setup_logging(settings: Settings) -> None:
    """Text, JSON or logstash lines on stdout at the configured level; `log.fields` are added to every line.

    stdout, not stderr: in a pod both reach `kubectl logs`, but some collectors (Cloud Logging, for one) mark
    every stderr line as an error. Errors that stop `serve` before it runs stay one line on stderr, like every
    command's.
    """
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(make_formatter(settings.log.formatter, settings.log.fields))
    logging.basicConfig(level=_LEVELS.get(settings.log.level, logging.INFO), handlers=[handler])
    if settings.log.accesslog.disabled:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def bind(settings: Settings) -> socket.socket:
    """The listening socket for `http.addr` (port 0 picks a free port), or a unix socket with `http.net: unix`."""
    if settings.http.net == "unix":
        path = settings.http.addr
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(path)
    else:
        sock = tcp_socket(*settings.http.bind())
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def bind_debug(settings: Settings) -> socket.socket | None:
    """The listening socket of Distribution's debug listener (`http.debug.addr`), or None when there is none."""
    debug = settings.http.debug
    if debug is None or not debug.addr:
        return None
    sock = tcp_socket(*split_listen_address(debug.addr))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def tcp_socket(host: str | None, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not yet listening; host None is every interface, IPv6 and IPv4."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = sorted(infos, key=lambda i: i[0] != socket.AF_INET6 or host is not None)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host is None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
    except BaseException:
        sock.close()
        raise
    return sock


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.http.tls
    if tls is None or not tls.certificate:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = {"tls1.0": ssl.TLSVersion.TLSv1, "tls1.1": ssl.TLSVersion.TLSv1_1,
                           "tls1.2": ssl.TLSVersion.TLSv1_2, "tls1.3": ssl.TLSVersion.TLSv1_3}[tls.minimumtls]
    ctx.load_cert_chain(tls.certificate, tls.key)
    if tls.clientcas:
        for ca in tls.clientcas:
            ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _serve_one(settings: Settings, sock: socket.socket, debug: socket.socket | None) -> int:
    """One worker: an event loop (uvloop when installed) serving the app on the shared socket, until stopped.

    Returns the number of requests cut when it stopped."""
    if os.environ.get("K3SREG_LOOP", "uvloop") == "uvloop":
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # Given also when the access log is off (setup_logging quiets it): it is where answers are counted.
    access_log = logging.getLogger("aiohttp.access")
    app, ctx, tls = create_app(settings), ssl_context(settings), settings.http.tls
    if ctx is not None and tls is not None:
        tlsreload.install(app, tlsreload.CertificateReloader(ctx, tls.certificate, tls.key))  # SIGHUP reloads
    else:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nothing to reload; a daemon survives a hangup
    return protocol.run(app, sock, ctx, access_log, settings.http.drain, access_log_format=ACCESS_LOG_FORMAT,
                        debug=(debug_app(settings), debug) if debug is not None else None)


def serve(settings: Settings, sock: socket.socket, workers: int, debug: socket.socket | None = None) -> int:
    """Serve from `workers` processes until SIGINT or SIGTERM, then drain (`http.draintimeout`).

    Returns the exit status: 0 when every request in flight finished, 1 when some were cut (as Distribution
    exits 1 when its drain times out).
    """
    if workers <= 1:
        return 1 if _serve_one(settings, sock, debug) else 0
    children: dict[int, int] = {}
    stopping = False
    failed = False
    parent = os.getpid()

    def spawn(slot: int) -> None:
        # Blocked across the fork: the child must never run the parent's handler, and a signal that reaches a
        # worker still starting waits until its loop handles it (protocol.run unblocks them) instead of
        # killing it outright.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, protocol.STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's loop takes it
            _die_with_parent(parent)
            status = 1
            try:
                status = 1 if _serve_one(settings, sock, debug) else 0
            finally:
                os._exit(status)
        children[pid] = slot
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping and signum != signal.SIGINT:
            return
        if not stopping:
            # While the parent holds the socket open the kernel keeps accepting connections that no worker
            # will ever answer: closed here, they are refused once the workers have closed theirs.
            sock.close()
            if debug is not None:
                debug.close()
        # A worker drains on the first signal and cuts on a later SIGINT (Ctrl-C again).
        forward = signal.SIGINT if stopping else signal.SIGTERM
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, forward)

    def hangup(_signum: int, _frame: object) -> None:
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, hangup)  # every worker reloads its certificate
    for index in range(workers):
        spawn(index)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        ended = children.pop(pid, -1)
        _forget_worker(pid)
        if ended >= 0 and not stopping:
            log.error("worker %d exited (status %d); starting a new one", pid, status)
            time.sleep(0.2)
            if not stopping:
                spawn(ended)
        elif os.waitstatus_to_exitcode(status) != 0:
            failed = True
    return 1 if failed else 0


def _forget_worker(pid: int) -> None:
    """Drop a dead worker's live gauges (fills in progress) from the metrics; its counters keep counting."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive a master killed with SIGKILL: ask Linux for SIGTERM when the parent dies."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the master died before the request took effect
        os._exit(0)
