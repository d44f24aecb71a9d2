"""aiohttp client middlewares: what each hop of a request gets, the first URL and every redirect alike.

aiohttp follows redirects itself and runs a request's middlewares once per hop, so each hop is judged by its
own URL, as Go's client does:

    route(proxies)          HTTP(S)_PROXY / NO_PROXY chosen for this hop's URL (`proxyenv`)
    authorize(auth, scope)  this hop's origin gets only its own Authorization: a token it asked for, Basic for the
                            registry's own origin once it asked, or nothing; a 401 whose challenge can be
                            answered is sent once more with the answer (a second 401 is returned as it is)

So the registry's credentials and tokens never reach a CDN or another registry a redirect leads to (aiohttp
also drops an `Authorization` the caller set when a redirect changes origin).
"""

from __future__ import annotations

from aiohttp import ClientHandlerType, ClientMiddlewareType, ClientRequest, ClientResponse, hdrs
from yarl import URL

from k3sreg.client.auth import Authenticator, parse_challenges
from k3sreg.client.proxyenv import ProxyEnv


def route(proxies: ProxyEnv) -> ClientMiddlewareType:
    """Send each hop through the proxy `proxies` names for its URL, or directly."""

    async def middleware(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        proxy = proxies.for_url(request.url)
        request.update_proxy(URL(proxy) if proxy else None, None, None)
        return await handler(request)

    return middleware


def authorize(auth: Authenticator, scope: str, replayable: bool = True) -> ClientMiddlewareType:
    """Give each hop the Authorization its origin asked for, for `scope`; answer a 401 challenge and send the
    hop once more, unless its body cannot be sent twice (`replayable` False: the 401 is returned)."""

    async def middleware(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        origin = str(request.url.origin())
        sent = await auth.authorization(origin, scope)
        _set_authorization(request, sent)
        response = await handler(request)
        if response.status != 401 or not replayable:
            return response
        challenges = parse_challenges(response.headers.getall(hdrs.WWW_AUTHENTICATE, []))
        if not await auth.answer(challenges, origin, scope, sent):
            return response
        response.release()
        _set_authorization(request, await auth.authorization(origin, scope))
        return await handler(request)

    return middleware


def _set_authorization(request: ClientRequest, value: str | None) -> None:
    if value:
        request.headers[hdrs.AUTHORIZATION] = value
    else:
        request.headers.popall(hdrs.AUTHORIZATION, None)
