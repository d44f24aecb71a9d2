"""Cross-cutting HTTP concerns: the one place errors become OCI JSON, and the headers every answer carries."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from k3sreg import errors

log = logging.getLogger("k3sreg.server")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")


def error_response(err: errors.RegistryError) -> web.Response:
    headers = {"Content-Type": "application/json", API_VERSION[0]: API_VERSION[1], **err.headers}
    return web.Response(status=err.status, body=json.dumps(err.body()).encode(), headers=headers)


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
        except web.HTTPMethodNotAllowed as e:
            resp = error_response(errors.Unsupported(f"method {request.method} is not allowed here"))
            resp.headers["Allow"] = ",".join(sorted(e.allowed_methods))
        except web.HTTPException:
            raise
        except (ConnectionResetError, OSError) as e:
            # The client went away, or a disk failed mid-request; nothing useful can be sent.
            log.warning("%s %s: %s", request.method, request.path, e)
            raise
        except Exception:
            log.exception("unhandled error in %s %s", request.method, request.path)
            resp = error_response(errors.RegistryError("internal server error"))
        if not resp.prepared:
            for k, v in fixed:
                resp.headers.add(k, v)
            resp.headers[API_VERSION[0]] = API_VERSION[1]
        return resp

    return [oci_errors]
