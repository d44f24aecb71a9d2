"""Cross-cutting HTTP concerns: the one place errors become OCI JSON, and the headers every answer carries.

Whatever a handler raises becomes an OCI error body: a RegistryError with its own code, aiohttp's HTTP
exceptions (404 outside the API, 405, 413) with the nearest code, anything else a 500 UNKNOWN. The log says
what an operator needs: a traceback only for a bug, one line for a missing permission, and only a debug line
for a client that went away.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from k3sreg import errors

log = logging.getLogger("k3sreg.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
CLIENT_GONE = 499  # nginx's status for a request whose client closed the connection; it is never sent


def error_body(code: str, message: str) -> bytes:
    """The OCI error document `{"errors": [{"code", "message"}]}`."""
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


def json_error(status: int, code: str, message: str) -> web.Response:
    """An OCI error answer with `status`."""
    return web.Response(status=status, body=error_body(code, message),
                        headers={"Content-Type": "application/json", API_VERSION[0]: API_VERSION[1]})


def error_response(err: errors.RegistryError) -> web.Response:
    headers = {"Content-Type": "application/json", API_VERSION[0]: API_VERSION[1], **err.headers}
    return web.Response(status=err.status, body=json.dumps(err.body()).encode(), headers=headers)


def http_error_response(request: web.BaseRequest, e: web.HTTPException) -> web.Response:
    """aiohttp's HTTP error `e` as OCI JSON: 404 NAME_UNKNOWN, 405 UNSUPPORTED (with Allow), 413 SIZE_INVALID."""
    if e.status == 404:
        resp = error_response(errors.NameUnknown(f"no such endpoint: {request.method} {request.path}"))
    elif e.status == 405:
        resp = error_response(errors.Unsupported(f"method {request.method} is not allowed here"))
    elif e.status == 413:
        resp = error_response(errors.TooLarge())
    else:
        resp = json_error(e.status, "UNSUPPORTED" if e.status < 500 else "UNKNOWN", e.reason)
    if isinstance(e, web.HTTPMethodNotAllowed):
        resp.headers["Allow"] = ",".join(sorted(e.allowed_methods))
    return resp


def client_gone(request: web.BaseRequest, e: BaseException) -> bool:
    """Whether `e` only says that the client closed its connection (nothing can be answered, nothing broke)."""
    transport = request.transport
    return isinstance(e, ConnectionError) and (transport is None or transport.is_closing())


def make_middlewares(extra_headers: dict[str, list[str]], problems: dict[str, str]
                     ) -> list[Callable[..., Awaitable[web.StreamResponse]]]:
    """Error mapping plus the configured `http.headers` on every response; 503 while `problems` is not empty."""
    fixed = [(k, v) for k, values in extra_headers.items() for v in values]

    @web.middleware
    async def oci_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if problems and request.path != "/debug/health":
                raise errors.Unavailable("health checks failing: " + "; ".join(problems.values()))
            resp = await handler(request)
        except errors.RegistryError as e:
            if e.status >= 500:
                log.error("%s %s: %s", request.method, request.path, e.message)
            resp = error_response(e)
        except web.HTTPException as e:
            if e.status < 400:
                raise  # a redirect
            resp = http_error_response(request, e)
        except Exception as e:
            resp = _unexpected(request, e)
        if not resp.prepared:
            for k, v in fixed:
                resp.headers.add(k, v)
            resp.headers[API_VERSION[0]] = API_VERSION[1]
        return resp

    return [oci_errors]


def _unexpected(request: web.Request, e: Exception) -> web.Response:
    """The answer to an exception no handler meant to raise: a 500 UNKNOWN, logged for who can act on it."""
    if client_gone(request, e):
        log.debug("%s %s: the client went away (%s)", request.method, request.path, e)
        return web.Response(status=CLIENT_GONE)
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM):
        # A missing permission: the operator needs the file and the reason, not a traceback.
        log.error("%s %s: storage error: %s", request.method, request.path, e)
    else:
        log.exception("unhandled error in %s %s", request.method, request.path)
    if request.writer.output_size > 0:
        # Part of an answer is on the wire: a second status line would corrupt the stream; cut it instead.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=CLIENT_GONE)
    return error_response(errors.RegistryError("internal server error"))
