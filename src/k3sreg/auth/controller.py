"""The decision for one registry request: who is asking, may they, and if not, what to answer.

    authorization values ──► Authenticator ──► Principal ──► may they? (token grants, or access rules) ──► Allowed
                                   │ Denial                        │ Denial
                                   ▼                               ▼
                     Refused(401 + challenge | 429 + Retry-After | 403)

Statuses follow Distribution: every refusal of `auth.htpasswd` and `auth.token` is 401 with its challenge
(the token challenge names the scope the request needs, and `error=` for a bad or too narrow token). Beyond
Distribution: a caller who logged in with a password but whom the access rules do not allow gets 403 (asking
again would not help), and an address with too many failed logins gets 429 before any password is checked.

`auth.silly` (Distribution's development mode) is a token controller whose authenticator takes any
Authorization header: without one, the Bearer challenge; with one, everything is allowed.

`costly` tells a server whether a decision may run bcrypt (a password not checked recently), so that it can
take such decisions off its event loop and every other decision inline. An allowed decision is remembered for
the same Authorization values and needs (`remembered`, up to DECISION_TTL, never past a token's expiry, and
forgotten when the htpasswd file changes), so that a client sending the same credentials on every request
costs a dictionary lookup per request. An address past the failed-login limit is never answered from memory.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from k3sreg.auth.challenge import auto_realm, basic_challenge, bearer_challenge
from k3sreg.auth.header import BasicCredentials, BearerToken, parse_authorization
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.model import ANONYMOUS, PULL, Access, Denial, Principal, Reason
from k3sreg.auth.ratelimit import LoginLimiter
from k3sreg.auth.rules import AccessRules
from k3sreg.auth.tokens import TokenVerifier

DECISION_TTL = 60.0
"""Seconds an allowed decision is reused for identical requests (a changed htpasswd file ends it sooner)."""
DECISION_CACHE = 4096


class Authenticator(Protocol):
    """Turns the Authorization header values of a request into a principal, or a denial saying why not."""

    def authenticate(self, authorization: Sequence[str]) -> Principal | Denial:
        """Who the request acts for; never raises for any header content."""
        ...

    def costly(self, authorization: Sequence[str]) -> bool:
        """True when `authenticate` may have to run bcrypt for these values (cheap to ask)."""
        ...

    def version(self) -> int:
        """A number that changes whenever an earlier answer of `authenticate` may no longer hold."""
        ...


class HtpasswdAuthenticator:
    """Basic credentials against an htpasswd file. Without credentials: anonymous when `anonymous` allows it."""

    def __init__(self, users: HtpasswdFile, anonymous: bool = False) -> None:
        self.users = users
        self.anonymous = anonymous

    def authenticate(self, authorization: Sequence[str]) -> Principal | Denial:
        """The user whose password the request carries."""
        found = parse_authorization(authorization)
        if isinstance(found, Denial):
            # containers/image sends `Basic :` (no user, no password) when it has no credentials.
            nobody = found.reason in (Reason.MISSING, Reason.EMPTY_USER)
            return ANONYMOUS if nobody and self.anonymous else found
        if isinstance(found, BearerToken):
            return Denial(Reason.WRONG_SCHEME, detail="Bearer sent where Basic is expected")
        return self.users.verify(found.user, found.password)

    def costly(self, authorization: Sequence[str]) -> bool:
        """True for Basic credentials whose last success is not remembered (bcrypt runs)."""
        found = parse_authorization(authorization)
        return isinstance(found, BasicCredentials) and not self.users.remembered(found.user, found.password)

    def version(self) -> int:
        """The htpasswd file's reading (looked at most once a second)."""
        return self.users.recent_generation()


class TokenAuthenticator:
    """Bearer tokens checked by a `TokenVerifier`."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier

    def authenticate(self, authorization: Sequence[str]) -> Principal | Denial:
        """The subject of the token the request carries."""
        found = parse_authorization(authorization)
        if isinstance(found, Denial):
            return found
        if isinstance(found, BasicCredentials):
            return Denial(Reason.WRONG_SCHEME, user=found.user, detail="Basic sent where a Bearer token is expected")
        return self.verifier.verify(found.token)

    def costly(self, authorization: Sequence[str]) -> bool:
        """Never: a signature check takes well under a millisecond, and passed tokens are remembered."""
        return False

    def version(self) -> int:
        """Always 0: a token carries its own expiry."""
        return 0


SILLY = Principal("silly", "basic")
"""Who a request of `auth.silly` acts for."""


class SillyAuthenticator:
    """Distribution's `auth.silly`: any Authorization header passes, none gets the challenge (development only)."""

    def authenticate(self, authorization: Sequence[str]) -> Principal | Denial:
        """`SILLY` for any header value, a MISSING denial without one."""
        return SILLY if authorization else Denial(Reason.MISSING)

    def costly(self, authorization: Sequence[str]) -> bool:
        """Never."""
        return False

    def version(self) -> int:
        """Always 0."""
        return 0


def missing_access(principal: Principal, need: Sequence[Access], rules: AccessRules | None) -> tuple[Access, ...]:
    """What of `need` the principal may not do: a token by its grants, a password by the rules (no rules: all
    is allowed to a user who logged in, as in Distribution), an anonymous caller by the rules only."""
    if principal.method == "token":
        return tuple(n for n in need if not principal.granted(n))
    if rules is None:
        return tuple(need) if principal.anonymous else ()
    return rules.missing(principal.name, need)


@dataclass(frozen=True)
class Allowed:
    """The request may go on, acting for `principal`."""

    principal: Principal


@dataclass(frozen=True)
class Refused:
    """The request is turned away: `status` (401, 403 or 429), the headers to send, and the denial to log."""

    status: int
    denial: Denial
    need: tuple[Access, ...]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestInfo:
    """What the decision needs to know of the request besides its credentials."""

    authorization: Sequence[str]
    need: tuple[Access, ...]
    client: str  # the client's address, for the login limiter
    host: str = ""  # the Host header, for `autoredirect`
    forwarded_proto: str | None = None


class AccessController:
    """One controller per registry: `kind` "htpasswd" or "token" (see the module docstring)."""

    def __init__(self, kind: str, authenticator: Authenticator, realm: str, service: str = "",
                 rules: AccessRules | None = None, limiter: LoginLimiter | None = None,
                 autoredirect_path: str | None = None) -> None:
        if kind not in ("htpasswd", "token"):
            raise ValueError(f"unknown access controller {kind!r}")
        self.kind = kind
        self.authenticator = authenticator
        self.realm = realm
        self.service = service
        self.rules = rules
        self.limiter = limiter
        self.autoredirect_path = autoredirect_path
        self._lock = threading.Lock()
        self._memo: collections.OrderedDict[tuple[tuple[str, ...], tuple[Access, ...]],
                                            tuple[Allowed, float, int]] = collections.OrderedDict()

    def remembered(self, request: RequestInfo) -> Allowed | None:
        """The allowed decision taken for the same Authorization values and needs, while it still holds."""
        key = (tuple(request.authorization), request.need)
        hit = self._memo.get(key)
        if hit is None:
            return None
        allowed, until, version = hit
        if time.monotonic() >= until or version != self.authenticator.version():
            with self._lock:
                self._memo.pop(key, None)
            return None
        if self.limiter is not None and request.authorization and self.limiter.limited(request.client):
            return None
        return allowed

    def _remember(self, request: RequestInfo, allowed: Allowed, version: int) -> None:
        now = time.monotonic()
        until = now + DECISION_TTL
        if allowed.principal.expires is not None:
            until = min(until, now + allowed.principal.expires - time.time())
        with self._lock:
            self._memo[(tuple(request.authorization), request.need)] = (allowed, until, version)
            while len(self._memo) > DECISION_CACHE:
                self._memo.popitem(last=False)

    def decide(self, request: RequestInfo) -> Allowed | Refused:
        """Allowed (remembered for the next request like this one), or the refusal to answer with."""
        version = self.authenticator.version()
        found = self._decide(request)
        if isinstance(found, Allowed):
            self._remember(request, found, version)
        return found

    def _decide(self, request: RequestInfo) -> Allowed | Refused:
        if self.limiter is not None and request.authorization and self.kind == "htpasswd":
            wait = self.limiter.retry_after(request.client)
            if wait > 0:
                denial = Denial(Reason.RATE_LIMITED, retry_after=wait)
                return Refused(429, denial, request.need, {"Retry-After": self.limiter.retry_after_header(
                    request.client)})
        found = self.authenticator.authenticate(request.authorization)
        if isinstance(found, Denial):
            if self.limiter is not None and self.kind == "htpasswd" and found.reason is not Reason.MISSING:
                self.limiter.failed(request.client)
            return self._challenge(found, request)
        if found.method == "anonymous" and not request.need:
            # `/v2/` tells clients whether to log in: answering it 200 would make skopeo and podman never send
            # the credentials they hold. Anonymous callers get the challenge there, and their rules elsewhere.
            return self._challenge(Denial(Reason.MISSING), request)
        missing = missing_access(found, request.need, self.rules)
        if not missing:
            return Allowed(found)
        denial = Denial(Reason.INSUFFICIENT_SCOPE, found.name, missing=missing)
        if self.kind == "htpasswd" and not found.anonymous:
            return Refused(403, denial, request.need)
        return self._challenge(denial, request)

    def costly(self, request: RequestInfo) -> bool:
        """True when `decide` may run bcrypt for this request (call it off the event loop then)."""
        return self.authenticator.costly(request.authorization)

    def catalog_filter(self, principal: Principal) -> Callable[[str], bool] | None:
        """Which repositories the catalog shows `principal`: those it may pull (by the access rules, or by the
        token's grants); None shows all (no rules: Distribution's meaning of `registry:catalog:*`)."""
        rules = self.rules
        if rules is None:
            return None
        if principal.method == "token":
            return lambda name: PULL in rules.allowed(principal.name, name) or \
                principal.granted(Access("repository", name, PULL))
        return lambda name: PULL in rules.allowed(principal.name, name)

    def _challenge(self, denial: Denial, request: RequestInfo) -> Refused:
        if self.kind == "htpasswd":
            return Refused(401, denial, request.need, {"WWW-Authenticate": basic_challenge(self.realm)})
        realm = self.realm
        if self.autoredirect_path and request.host:
            realm = auto_realm(request.host, self.autoredirect_path, request.forwarded_proto)
        value = bearer_challenge(realm, self.service, request.need, denial)
        return Refused(401, denial, request.need, {"WWW-Authenticate": value})
