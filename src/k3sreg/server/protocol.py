"""The connection layer under the application: what aiohttp answers and logs by itself, made to fit a registry.

aiohttp answers some requests before any handler runs: a request line it cannot parse, a NUL byte in a path,
an over-long header, or the TLS handshake that docker, skopeo and podman send first to a plain-HTTP registry.
It also reports clients that went away from deep inside its loop. Here those answers are OCI JSON and each is
logged as one debug line, without an access-log line (docker-registry is silent about them too). Anything else
that escapes the middleware still logs its traceback: in this log, a traceback means a bug.

    run()  = web.run_app(), with a runner whose server makes RegistryRequestHandler connections
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_log import AccessLogger

from k3sreg.server.middleware import API_VERSION, client_gone, error_body, json_error

log = logging.getLogger("k3sreg.server")
_JSON = {"Content-Type": "application/json", API_VERSION[0]: API_VERSION[1]}


class _Unlogged(web.Response):
    """An answer the access log leaves out (it went to a request that never was one)."""


class AccessLog(AccessLogger):
    """aiohttp's access log, minus the answers to malformed requests (they are logged at debug instead)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not isinstance(response, _Unlogged):
            super().log(request, response, time)


class RegistryRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with OCI JSON error answers and a log kept for operators."""

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
        access_log: logging.Logger | None, shutdown_timeout: float,
        access_log_format: str = AccessLogger.LOG_FORMAT) -> None:
    """Serve `app` on `sock` until SIGINT or SIGTERM, as web.run_app does."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # keepalive_timeout: run_app's default, which the server had before.
    main = loop.create_task(_serve(app, sock, ssl_context, shutdown_timeout, access_log=access_log,
                                   access_log_class=AccessLog, access_log_format=access_log_format,
                                   keepalive_timeout=75.0))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
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
                 shutdown_timeout: float, **handler_args: Any) -> None:
    runner = _Runner(app, handle_signals=True, shutdown_timeout=shutdown_timeout, **handler_args)
    await runner.setup()
    try:
        await web.SockSite(runner, sock, ssl_context=ssl_context, backlog=1024).start()
        await asyncio.Event().wait()  # until a signal raises GracefulExit
    finally:
        await runner.cleanup()
