"""One remote registry's HTTP: every request goes out here, through its auth, retries, redirects and proxies.

    Transport.request(method, url, scope=...)
      └ retry.RetryPolicy.run      network errors and 500/502/503/504: tried again with backoff
          └ session.request        aiohttp follows redirects (at most MAX_REDIRECTS) and, on every hop, runs
              ├ middleware.route       the proxy for this hop's URL
              └ middleware.authorize   this origin's Authorization; a 401 challenge answered, sent once more

Only a 2xx answer is returned (body unread). 404 → the `missing` error given (with the registry's message);
401 / 403 → Unauthorized / Denied; 429 → TooManyRequests, and the registry is then not asked again for its
Retry-After (10 s when it names none): requests meanwhile fail at once with the time left, so a rate-limited
Docker Hub is not hammered while the cache serves what it holds; anything else that went wrong (refused, timed
out, 5xx, cut) → Unavailable naming the registry, the request, the number of attempts and the reason, in one
message. The token service is asked through the same session and retry policy, without the auth middleware.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
from yarl import URL

from k3sreg.client.answers import (
    attempts,
    describe_failure,
    retry_after_seconds,
    upstream_message,
)
from k3sreg.client.auth import Authenticator, BearerRealm, TokenError, parse_token_response, token_query
from k3sreg.client.middleware import authorize, route
from k3sreg.client.proxyenv import ProxyEnv
from k3sreg.client.retry import RETRY_STATUSES, GaveUp, RetryableStatus, RetryPolicy
from k3sreg.client.session import USER_AGENT, new_session, request_options, tls_context
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import Denied, RegistryError, TooManyRequests, Unauthorized, Unavailable

T = TypeVar("T")
MAX_REDIRECTS = 5
_ERROR_BODY = 64 * 1024
_TOKEN_BODY = 1024 * 1024
log = logging.getLogger("k3sreg.upstream")  # the logger name operators' log lines have always carried


class Transport:
    """Sends requests to the registry of `settings` through `session` (None: `new_session()` on first use,
    closed by `close()`; a session passed in belongs to the caller)."""

    def __init__(self, settings: UpstreamSettings, session: aiohttp.ClientSession | None = None,
                 retry: RetryPolicy | None = None, role: str = "upstream") -> None:
        self.name: str = settings.name
        self.role = role  # how messages name the registry: "upstream" (the cache's), "source", "target"
        url = URL(settings.url + "/")
        # Credentials written into the URL are used like `username`/`password` and never shown in messages.
        username, password = settings.username or url.user or "", settings.password or url.password or ""
        self.base = url.with_user(None)
        self.display = str(self.base).rstrip("/")
        self.timeout: float = settings.timeout
        self.retry = retry or RetryPolicy(settings.retries)
        where = f"upstreams[{settings.name}].tls" if role == "upstream" else f"the TLS files of {role} {settings.name}"
        self._options = request_options(settings, tls_context(settings, where))
        self._session = session
        self._owns_session = session is None
        self._quiet_until = 0.0  # monotonic time before which a rate-limited registry is not asked
        # Read once, as Go's http.ProxyFromEnvironment does: HTTP_PROXY / HTTPS_PROXY / NO_PROXY.
        self._route = route(ProxyEnv.from_env(os.environ))
        self.auth = Authenticator(str(self.base.origin()), username, password, self._fetch_token)

    async def close(self) -> None:
        """Close the session if this transport made it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def session(self) -> aiohttp.ClientSession:
        """The session requests go through (made on first use, in the running loop, when none was given)."""
        if self._session is None:
            self._session = new_session()
        return self._session

    def describe(self, exc: BaseException) -> str:
        """Why a request failed, in words (see `answers.describe_failure`)."""
        return describe_failure(exc, self.timeout)

    async def request(
        self,
        method: str,
        url: URL,
        *,
        scope: str,
        where: str,
        missing: type[RegistryError],
        headers: dict[str, str] | None = None,
        data: Any = None,
        replayable: bool = True,
    ) -> aiohttp.ClientResponse:
        """A 2xx answer (body unread) to `method url` with the Authorization `scope` needs; every other outcome
        raises (see the module docstring). `where` names the registry and repository in messages; `data` that
        can be sent only once (`replayable` False) is neither retried nor answered after a 401."""
        self._check_quiet(where)
        sent = {"User-Agent": USER_AGENT, **(headers or {})}
        middlewares = (self._route, authorize(self.auth, scope, replayable))
        policy = self.retry if replayable else self.retry.once()
        tries = 0

        async def attempt() -> aiohttp.ClientResponse:
            nonlocal tries
            tries += 1
            response = await self.session().request(
                method, url, headers=sent, data=data, middlewares=middlewares,
                allow_redirects=True, max_redirects=MAX_REDIRECTS + 1, **self._options)
            if response.status in RETRY_STATUSES:
                raise RetryableStatus(response.status, await drain(response))
            return response

        what = f"{self.role} {self.name}: {method} {url}"
        try:
            response = await policy.run(attempt, what, self.describe)
        except GaveUp as failed:
            if isinstance(failed.cause, RetryableStatus):
                raise self._error(failed.cause.status, failed.cause.body, missing, where, f"{method} {url.path}",
                                  failed.attempts) from None
            raise Unavailable(f"{self.role} {self.name} ({self.display}): {method} {url.path} failed "
                              f"{attempts(failed.attempts)}: {self.describe(failed.cause)}") from failed.cause
        if 200 <= response.status < 300:
            return response
        body = await drain(response)
        if response.status == 429:
            raise self._rate_limited(where, upstream_message(body), response.headers.get("Retry-After"))
        raise self._error(response.status, body, missing, where, f"{method} {url.path}", tries)

    async def retrying(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """`attempt()` under this registry's retry policy (for reading a body that may break off); GaveUp when the
        attempts run out."""
        return await self.retry.run(attempt, what, self.describe)

    def _check_quiet(self, where: str) -> None:
        """While the registry's Retry-After runs, refuse at once instead of asking (and being counted) again."""
        left = self._quiet_until - time.monotonic()
        if left > 0:
            wait = math.ceil(left)
            raise TooManyRequests(f"{where}: rate limited by the upstream; not asked again for {wait} s",
                                  headers={"Retry-After": str(wait)})

    def _rate_limited(self, where: str, said: str | None, retry_after: str | None) -> TooManyRequests:
        wait = retry_after_seconds(retry_after, time.time())
        self._quiet_until = time.monotonic() + wait
        log.warning("%s %s: rate limited (%s); no requests to it for %d s", self.role, self.name,
                    said or "HTTP 429", wait)
        return TooManyRequests(f"{where}: {said or TooManyRequests.default_message}",
                               headers={"Retry-After": str(wait)})

    def _error(self, status: int, body: bytes, missing: type[RegistryError], where: str, what: str,
               tries: int) -> RegistryError:
        said = upstream_message(body)
        if status == 404:
            return missing(f"{where}: {said or missing.default_message}")
        known: dict[int, type[RegistryError]] = {401: Unauthorized, 403: Denied, 429: TooManyRequests}
        if status in known:
            cls = known[status]
            return cls(f"{where}: {said or cls.default_message}")
        return Unavailable(f"{self.role} {self.name} ({self.display}): {what} answered HTTP {status} "
                           f"{attempts(tries)}" + (f" ({said})" if said else ""))

    async def _fetch_token(self, realm: BearerRealm, scope: str, basic: str | None) -> tuple[str, float]:
        """GET the token service; its refusals become Unauthorized / Denied, its failures Unavailable."""
        where = f"{self.role} {self.name}: the token service {realm.realm}"
        url = URL(realm.realm).update_query(token_query(realm, scope))
        headers = {"User-Agent": USER_AGENT, **({"Authorization": basic} if basic else {})}

        async def attempt() -> tuple[int, bytes]:
            async with self.session().get(url, headers=headers, middlewares=(self._route,),
                                          **self._options) as response:
                body = await read_limited(response, _TOKEN_BODY)
                if response.status in RETRY_STATUSES:
                    raise RetryableStatus(response.status, body)
                return response.status, body

        try:
            status, body = await self.retry.run(attempt, where, self.describe)
        except GaveUp as failed:
            if not isinstance(failed.cause, RetryableStatus):
                raise Unavailable(f"{where} failed {attempts(failed.attempts)}: {self.describe(failed.cause)}"
                                  ) from failed.cause
            status, body = failed.cause.status, failed.cause.body
        said = upstream_message(body) or body[:200].decode(errors="replace").strip()
        if status in (401, 403):
            cls = Unauthorized if status == 401 else Denied
            raise cls(f"{where} refused a token for {scope!r} (HTTP {status}{': ' + said if said else ''})")
        if status != 200:
            raise Unavailable(f"{where} answered HTTP {status} for {scope!r}")
        try:
            return parse_token_response(body)
        except TokenError as exc:
            raise Unavailable(f"{where}: {exc}") from None


async def read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body up to `limit` bytes (what is beyond is left unread)."""
    body = b""
    while len(body) < limit and (chunk := await response.content.read(limit - len(body))):
        body += chunk
    return body


async def drain(response: aiohttp.ClientResponse) -> bytes:
    """The start of an answer that is not going to be used further (an error document); releases it."""
    try:
        return await read_limited(response, _ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return b""
    finally:
        response.release()
