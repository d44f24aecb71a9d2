"""`GET` and `POST /auth/token`: the built-in token service (k3sreg.auth.service) on the wire.

    GET  /auth/token?service=S&scope=...        Basic credentials (or none: anonymous)   Docker token protocol
    POST /auth/token   (form) grant_type=password&username=...&password=...&service=S&scope=...   OAuth2, containerd

Each answer is computed in a thread (a login runs bcrypt) and sent with `Cache-Control: no-store`. A refusal is
logged as one line like the registry's own denials; a token given out is logged with its user and what it
grants, never with the token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from prometheus_client import Counter

from k3sreg.auth.scopes import format_scopes
from k3sreg.auth.service import TokenReply, TokenService
from k3sreg.server.access import client_of, log_denial

log = logging.getLogger("k3sreg.auth")
TOKENS = Counter("k3sreg_auth_tokens_issued_total", "Tokens given out by the built-in token service")
_FORM = "application/x-www-form-urlencoded"


def _lists(values: MultiMapping[Any]) -> dict[str, list[str]]:
    return {key: [v for v in values.getall(key) if isinstance(v, str)] for key in dict.fromkeys(values.keys())}


def install(app: web.Application, service: TokenService, paths: Sequence[str]) -> None:
    """Serve `service` at each of `paths` (GET and POST)."""

    async def answer(request: web.Request, reply_of: asyncio.Future[TokenReply]) -> web.Response:
        reply = await reply_of
        if reply.denial is not None:
            log_denial(request, reply.denial, (), "token refused")
        elif reply.status == 200:
            TOKENS.inc()
            log.info("token issued: user=%s client=%s granted=%r", reply.user or "-", client_of(request),
                     format_scopes(reply.granted) or "nothing")
        headers = {**reply.headers, "Cache-Control": "no-store", "Pragma": "no-cache"}
        return web.json_response(reply.body, status=reply.status, headers=headers)

    async def get(request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        authorization = request.headers.getall("Authorization", [])
        params = _lists(request.query)
        return await answer(request, loop.run_in_executor(None, service.answer_get, authorization, params,
                                                           client_of(request)))

    async def post(request: web.Request) -> web.StreamResponse:
        if request.content_type != _FORM:
            return web.json_response({"error": "invalid_request", "error_description": f"send a {_FORM} form"},
                                     status=400, headers={"Cache-Control": "no-store"})
        form = _lists(await request.post())
        loop = asyncio.get_running_loop()
        return await answer(request, loop.run_in_executor(None, service.answer_post, form, client_of(request)))

    for path in paths:
        app.router.add_get(path, get)
        app.router.add_post(path, post)
