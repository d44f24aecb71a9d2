"""The connection layer under the application: what aiohttp answers and logs by itself, made to fit a registry.

aiohttp answers some requests before any handler runs: a request line it cannot parse, a NUL byte in a path,
an over-long header, or the TLS handshake that docker, skopeo and podman send first to a plain-HTTP registry.
It also reports clients that went away from deep inside its loop. Here those answers are OCI JSON and each is
logged as one debug line, without an access-log line (docker-registry is silent about them too). Anything else
that escapes the middleware still logs its traceback: in this log, a traceback means a bug.

    run()  = web.run_app(), with a runner whose server makes RegistryRequestHandler connections, and a drain

Stopping (SIGTERM from Kubernetes, systemd or the master process; SIGINT from Ctrl-C):

    signal ──► listening socket closed: new connections are refused (the Service moves on)
           ──► idle keep-alive connections closed; busy ones close after their answer
           ──► requests in flight (a layer upload, a blob download) get `drain` seconds to finish
           ──► what is still running then is cut (a second SIGINT cuts at once); an upload cut half-way
               leaves its session as it was before the request, and no blob
           ──► the application's cleanup; run() returns how many requests were cut
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger

from k3sreg.server import metrics, routes
from k3sreg.server.middleware import API_VERSION, client_gone, error_body, json_error

log = logging.getLogger("k3sreg.server")
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_CUT_GRACE = 2.0  # seconds a cut request's handler gets to clean up (abort its upload) before it is cancelled
_DRAIN_POLL = 0.1
_JSON = {"Content-Type": "application/json", API_VERSION[0]: API_VERSION[1]}


class _Unlogged(web.Response):
    """An answer the access log leaves out (it went to a request that never was one)."""


class AccessLog(AccessLogger):
    """aiohttp's access log, minus the answers to malformed requests (they are logged at debug instead); and,
    logged or not, every answer counted in the metrics once its last byte is out (so a sendfile download
    counts its whole time and size)."""

    @property
    def enabled(self) -> bool:
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = request.get(metrics.ROUTE_KEY) or routes.kind(request.path)
        metrics.STATS.observe(route, request.method, response.status, time, request.content.total_bytes,
                              request.writer.output_size)
        if not isinstance(response, _Unlogged) and self.logger.isEnabledFor(logging.INFO):
            super().log(request, response, time)


class RegistryRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with OCI JSON error answers and a log kept for operators."""

    # What the drain asks of a connection, read from aiohttp's own state (its keep-alive timer and its
    # shutdown() test the same fields). close() is no way to stop a busy one: it drops the rest of the body.
    @property
    def busy(self) -> bool:
        """A request is being handled on this connection: read, answered, or its answer still being sent."""
        return self._request_in_progress

    @property
    def idle(self) -> bool:
        """Kept alive, waiting for a next request: closing it now loses nothing."""
        return self._waiter is not None and not self._waiter.done()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """The answer when a request could not be parsed or escaped the middleware; the connection closes."""
        if isinstance(exc, HttpProcessingError):
            # The first clause only: what follows quotes the client's bytes.
            reason = (exc.message or type(exc).__name__).strip().split(":", 1)[0]
            log.debug("malformed request from %s: %s", request.remote, reason)
            resp: web.Response = _Unlogged(status=status, headers=_JSON,
                                           body=error_body("UNSUPPORTED", f"malformed request: {reason}"))
        else:
            if exc is not None and client_gone(request, exc):
                log.debug("client %s went away: %s", request.remote, exc)
            else:
                log.error("unhandled error answering %s", request.remote, exc_info=exc)
            resp = json_error(status, "UNKNOWN" if status >= 500 else "UNSUPPORTED",
                              f"request failed ({status})" if status != 500 else "internal server error")
        if request.writer.output_size > 0:
            # Part of an answer is on the wire already: only a cut connection is honest now.
            raise ConnectionError("an answer was already started; closing the connection")
        resp.force_close()
        return resp


class _RegistryServer(web.Server):
    """A web.Server whose connections are RegistryRequestHandlers."""

    def __call__(self) -> web.RequestHandler:
        return RegistryRequestHandler(self, loop=self._loop, **self._kwargs)


class _Runner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The application builds a plain Server; only its connection factory changes, so adopting the
        # subclass keeps every setting aiohttp gave it.
        server.__class__ = _RegistryServer
        return server


def run(app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None,
        access_log: logging.Logger | None, drain: float,
        access_log_format: str = AccessLogger.LOG_FORMAT,
        debug: tuple[web.Application, socket.socket] | None = None) -> int:
    """Serve `app` on `sock` until SIGINT or SIGTERM, then drain for up to `drain` seconds (module docstring);
    `debug`: a second application and its socket (Distribution's debug listener), served beside it, unlogged.

    Returns the number of requests that were cut (0: every request in flight finished).
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # keepalive_timeout: run_app's default, which the server had before.
    main = loop.create_task(_serve(app, sock, ssl_context, drain, debug, access_log=access_log,
                                   access_log_class=AccessLog, access_log_format=access_log_format,
                                   keepalive_timeout=75.0))
    try:
        return loop.run_until_complete(main)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place: nothing was served yet
        return 0
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(app: web.Application, sock: socket.socket, ssl_context: ssl.SSLContext | None,
                 drain: float, debug: tuple[web.Application, socket.socket] | None, **handler_args: Any) -> int:
    loop = asyncio.get_running_loop()
    stop, cut = asyncio.Event(), asyncio.Event()

    def on_signal(signum: int) -> None:
        if not stop.is_set():
            log.info("stopping on %s", signal.Signals(signum).name)
            stop.set()
        elif signum == signal.SIGINT:
            # Ctrl-C again. A repeated SIGTERM does not cut: Kubernetes, the master and a signal sent to the
            # whole process group may each deliver one.
            cut.set()

    async def last_answer(request: web.Request, response: web.StreamResponse) -> None:
        # While draining, each answer tells its client to send no further request on its connection.
        if stop.is_set():
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"

    app.on_response_prepare.append(last_answer)
    # Our own handlers, not aiohttp's: theirs raise GracefulExit, which cancels the drain half-way.
    runner = _Runner(app, handle_signals=False, shutdown_timeout=_CUT_GRACE, **handler_args)
    await runner.setup()
    side = web.AppRunner(debug[0], handle_signals=False, access_log=None) if debug is not None else None
    if side is not None:
        await side.setup()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    # A worker starts with them blocked (run.py): one that came during start-up is handled now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context, backlog=1024).start()
        if side is not None and debug is not None:
            await web.SockSite(side, debug[1]).start()
        await stop.wait()
        return await _drain(runner, drain, cut)
    finally:
        if side is not None:
            await side.cleanup()
        await runner.cleanup()
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _drain(runner: web.AppRunner, seconds: float, cut: asyncio.Event) -> int:
    """Stop accepting, wait up to `seconds` (or until `cut` is set) for the requests in flight, cut the rest.

    Returns how many requests were cut."""
    for site in list(runner.sites):
        await site.stop()  # closes the listening socket (this process's copy of it)
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    def waiting() -> list[RegistryRequestHandler]:
        """Connections to wait for; idle ones are closed on the way (a kept-alive one once its answer is out)."""
        left = []
        for conn in server.connections:
            assert isinstance(conn, RegistryRequestHandler)
            if conn.idle:
                conn.force_close()
            else:
                left.append(conn)
        return left

    left = waiting()
    if any(c.busy for c in left):
        log.info("draining: %d request(s) in flight get up to %gs to finish (http.draintimeout; Ctrl-C cuts "
                 "them)", sum(c.busy for c in left), seconds)
    while left and not cut.is_set() and loop.time() < deadline:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cut.wait(), min(_DRAIN_POLL, max(deadline - loop.time(), 0)))
        left = waiting()
    busy = sum(c.busy for c in left)
    if busy:
        why = "interrupted" if cut.is_set() else f"http.draintimeout ({seconds:g}s) ran out"
        log.error("cutting %d request(s) still in flight: %s", busy, why)
    for conn in left:
        conn.force_close()
    return busy
