"""Authenticating to a registry: `WWW-Authenticate` parsing, the Bearer token flow, Basic.

    request ── anonymous, or a cached token / Basic ──► upstream
       ◄── 401 + WWW-Authenticate: Bearer realm="R",service="S",scope="repository:library/nginx:pull"
    GET R?service=S&scope=repository:library/nginx:pull  (Basic credentials when configured)
       ◄── {"token" or "access_token": "...", "expires_in": 300}
    request again, once, with `Authorization: Bearer <token>`; the token is cached per scope until it expires

The scope is what the request needs: `pull_scope` for reads, `push_scope` for uploads and manifest PUTs; after
a challenge that names a scope, as Distribution's does, the token is asked for that scope and the request's own.
`middleware.authorize` applies this to every hop of a request; this module takes no network and is unit-tested alone.

Once a registry has answered with a Bearer challenge, the next request for another repository fetches its token
first (one round trip saved per repository); once it asked for Basic, credentials are sent from the start.
All of this is per origin: the configured credentials go only to the upstream's own origin and its token service;
a host that a redirect leads to and that challenges gets a token fetched for it without them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# RFC 9110 token characters; values are also accepted unquoted up to the next comma, as some registries send URLs.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?=\s|,|$)\s*")
_PARAM = re.compile(rf"[\s,]*({_TOKEN})\s*=\s*({_QUOTED}|[^\s,\"]*)\s*(?:,\s*|$)")
_TOKEN68 = re.compile(r"([A-Za-z0-9._~+/-]+=*)\s*(?:,\s*|$)")

DEFAULT_TOKEN_LIFETIME = 60.0
"""Seconds a token is trusted when the token service gives no `expires_in` (Docker's token spec)."""


@dataclass(frozen=True)
class Challenge:
    """One challenge of a `WWW-Authenticate` header: the scheme (lower-case) and its parameters (keys lower-case)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_challenges(headers: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more `WWW-Authenticate` header values; malformed tails are ignored, never raised."""
    values = [headers] if isinstance(headers, str) else list(headers)
    out: list[Challenge] = []
    for text in values:
        pos = 0
        while pos < len(text):
            scheme = _SCHEME.match(text, pos)
            if scheme is None:
                break
            pos = scheme.end()
            params: dict[str, str] = {}
            token68 = _TOKEN68.match(text, pos)
            # `abc==` is a token68; `key=value` is a parameter; `Basic, Bearer ...` starts the next challenge.
            if token68 is not None and not _PARAM.match(text, pos):
                out.append(Challenge(scheme.group(1).lower(), {}, token68.group(1)))
                pos = token68.end()
                continue
            while (param := _PARAM.match(text, pos)) is not None:
                params[param.group(1).lower()] = _unquote(param.group(2))
                pos = param.end()
            out.append(Challenge(scheme.group(1).lower(), params))
    return out


def pull_scope(repository: str) -> str:
    """The token scope that allows pulling `repository` (Docker's token spec: `repository:NAME:pull`)."""
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    """The token scope that allows pushing to `repository` (and pulling, which a push needs to check blobs)."""
    return f"repository:{repository}:pull,push"


def merge_scopes(challenged: str, own: str) -> str:
    """The scopes to ask a token for after a challenge: the challenge's, then those of `own` it lacks (a push
    challenged on its first HEAD for `pull` asks for `pull,push` at once, as containerd does)."""
    parts = challenged.split()
    return " ".join(parts + [part for part in own.split() if part not in parts])


def basic_authorization(username: str, password: str) -> str:
    """The `Authorization` header value for HTTP Basic with these credentials."""
    raw = f"{username}:{password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")


class TokenError(Exception):
    """The token service answered something that is not a token; the message says what."""


def parse_token_response(body: bytes) -> tuple[str, float]:
    """(token, lifetime in seconds) from a token service answer; accepts `token` and `access_token`."""
    try:
        doc: Any = json.loads(body)
    except ValueError as exc:
        raise TokenError(f"the token service answered with invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise TokenError("the token service answered with JSON that is not an object")
    token = doc.get("token") or doc.get("access_token")
    if not isinstance(token, str) or not token:
        raise TokenError("the token service answer has neither 'token' nor 'access_token'")
    lifetime = doc.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int | float) or lifetime <= 0:
        lifetime = DEFAULT_TOKEN_LIFETIME
    return token, float(lifetime)


@dataclass(frozen=True)
class BearerRealm:
    """Where tokens come from: the `realm` URL and the `service` of a Bearer challenge."""

    realm: str
    service: str


TokenKey = tuple[BearerRealm, str]
"""A cached token is valid for one realm and one scope string."""


class TokenCache:
    """Tokens by (realm, scope) until shortly before they expire; `clock` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[TokenKey, tuple[str, float]] = {}
        self._locks: dict[TokenKey, asyncio.Lock] = {}

    @staticmethod
    def usable_for(lifetime: float) -> float:
        """How long a token of `lifetime` seconds is used: a margin keeps it from expiring in flight."""
        return lifetime - min(10.0, lifetime / 4)

    def get(self, key: TokenKey) -> str | None:
        """The cached token for `key`, or None when there is none or it is about to expire."""
        entry = self._tokens.get(key)
        if entry is None:
            return None
        if self._clock() >= entry[1]:
            del self._tokens[key]
            return None
        return entry[0]

    def put(self, key: TokenKey, token: str, lifetime: float) -> None:
        """Remember `token` for `key`, valid `lifetime` seconds from now."""
        self._tokens[key] = (token, self._clock() + self.usable_for(lifetime))

    def drop(self, key: TokenKey, token: str) -> None:
        """Forget `token` for `key` (the upstream refused it), unless a newer one already replaced it."""
        entry = self._tokens.get(key)
        if entry is not None and entry[0] == token:
            del self._tokens[key]

    def lock(self, key: TokenKey) -> asyncio.Lock:
        """The lock that makes concurrent requests for one scope fetch a single token."""
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


def bearer_realm(challenge: Challenge) -> BearerRealm | None:
    """The token service of a Bearer challenge, or None when it names no realm."""
    realm = challenge.params.get("realm")
    if challenge.scheme != "bearer" or not realm:
        return None
    return BearerRealm(realm, challenge.params.get("service", ""))


def token_query(realm: BearerRealm, scope: str) -> list[tuple[str, str]]:
    """Query parameters of a token request: `service`, then one `scope` per space-separated scope."""
    query: list[tuple[str, str]] = []
    if realm.service:
        query.append(("service", realm.service))
    query.extend(("scope", part) for part in scope.split() if part)
    return query


FetchToken = Callable[[BearerRealm, str, "str | None"], Awaitable[tuple[str, float]]]
"""Ask `realm` for a token of `scope`, sending the given Basic `Authorization` (or none); (token, lifetime)."""


class Authenticator:
    """Chooses the `Authorization` for each request hop and answers 401 challenges, for one upstream.

    Hosts are told apart by origin (scheme://host:port). The configured credentials only ever go to the upstream's
    own `origin` (Basic) or to the token service its challenges name; another origin (a CDN or a mirror a
    redirect leads to) gets only tokens fetched anonymously for its own challenges. `fetch_token` does the HTTP
    exchange with the token service (and raises the domain errors); this class decides when, for which scope and
    with which credentials, and caches the result.
    """

    def __init__(
        self, origin: str, username: str, password: str, fetch_token: FetchToken, cache: TokenCache | None = None
    ):
        self.origin = origin
        self._basic = basic_authorization(username, password) if username else None
        self._fetch = fetch_token
        self.cache = cache or TokenCache()
        self._realms: dict[str, BearerRealm] = {}
        self._use_basic = False

    async def authorization(self, origin: str, scope: str) -> str | None:
        """What to send to `origin` for a request that needs `scope` (`pull_scope(...)`, `push_scope(...)`):
        a token once it asked for one, Basic once it asked, or None."""
        if origin == self.origin and self._use_basic:
            return self._basic
        realm = self._realms.get(origin)
        if realm is None:
            return None
        return "Bearer " + await self._token(realm, scope, scope, None, origin)

    async def answer(self, challenges: Iterable[Challenge], origin: str, scope: str, sent: str | None) -> bool:
        """After `origin` answered `sent` with 401 and `challenges`: get what the retry needs; False if nothing can."""
        challenges = list(challenges)
        for challenge in challenges:
            realm = bearer_realm(challenge)
            if realm is not None:
                self._realms[origin] = realm
                asked = merge_scopes(challenge.params.get("scope", ""), scope)
                stale = sent[len("Bearer ") :] if sent and sent.startswith("Bearer ") else None
                await self._token(realm, asked, scope, stale, origin)
                return True
        basic = any(c.scheme == "basic" for c in challenges)
        if basic and origin == self.origin and self._basic and sent != self._basic:
            self._use_basic = True
            return True
        return False

    async def _token(self, realm: BearerRealm, scope: str, own_scope: str, stale: str | None, origin: str) -> str:
        key = (realm, scope)
        async with self.cache.lock(key):
            # Concurrent requests that were refused together fetch one new token: the first replaces `stale`.
            token = self.cache.get(key)
            if token is not None and token != stale:
                return token
            credentials = self._basic if origin == self.origin else None
            token, lifetime = await self._fetch(realm, scope, credentials)
            self.cache.put(key, token, lifetime)
            # The next request for this repository looks the token up by its own scope, not the challenge's.
            own = (realm, own_scope)
            if own != key:
                self.cache.put(own, token, lifetime)
            return token
