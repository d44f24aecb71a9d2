"""The built-in token service (beyond Distribution): `GET /auth/token` of the Docker token protocol, and the
OAuth2 password grant (`POST /auth/token`) that containerd tries first when it holds credentials.

    GET  /auth/token?service=S&scope=repository:team/app:pull,push&scope=...&account=ci   (Basic credentials)
    POST /auth/token   grant_type=password&username=ci&password=...&service=S&scope=...&client_id=...
      -> 200 {"token": JWT, "access_token": JWT, "expires_in": 300, "issued_at": "2025-01-01T00:00:00Z"}

Users come from htpasswd; without credentials the caller is anonymous. The token grants the asked scopes
intersected with what the access rules allow (never an error for asking too much). The rules are asked about
the repository a request for the scope's name really touches (`canonical`: `docker.io/nginx` is the cache
repository `docker.io/library/nginx`), and the token then names both, so that clients which ask for the name
they were given and clients which ask for the challenge's scope both get what they need. `offline_token` is
accepted and ignored: no refresh tokens are given out, so a client logs in again when its token expires.
Failed logins count against the client's address (`LoginLimiter`); past the limit the answer is 429 before any
password is checked. Answers are plain data (status, JSON body, headers) for the server to send.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from k3sreg.auth.challenge import basic_challenge
from k3sreg.auth.header import BasicCredentials, parse_authorization
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.model import Access, Denial, Principal, Reason
from k3sreg.auth.ratelimit import LoginLimiter
from k3sreg.auth.rules import AccessRules
from k3sreg.auth.scopes import ScopeError, access_claim, format_scopes, parse_scopes
from k3sreg.auth.signing import Signer
from k3sreg.auth.tokens import sign_token

DEFAULT_LIFETIME = 300.0
"""Seconds a token lives unless configured: short, as a leaked token should be worth little."""


@dataclass(frozen=True)
class TokenReply:
    """What to answer: status, JSON body, headers; plus, for the log, the user, what was granted or the denial."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    granted: tuple[Access, ...] = ()
    denial: Denial | None = None


def _error(status: int, code: str, message: str, **extra: Any) -> TokenReply:
    return TokenReply(status, {"errors": [{"code": code, "message": message}]}, **extra)


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name) or []
    return values[0] if values else None


class TokenService:
    """Issues tokens for `service`, signed by `signer`, as `issuer` (see the module docstring)."""

    def __init__(self, issuer: str, service: str, users: HtpasswdFile, rules: AccessRules, signer: Signer,
                 lifetime: float = DEFAULT_LIFETIME, limiter: LoginLimiter | None = None,
                 clock: Callable[[], float] = time.time, canonical: Callable[[str], str] | None = None) -> None:
        self.issuer = issuer
        self.service = service
        self.users = users
        self.rules = rules
        self.signer = signer
        self.lifetime = lifetime
        self.limiter = limiter
        self._clock = clock
        self.canonical = canonical

    def answer_get(self, authorization: Sequence[str], params: Mapping[str, Sequence[str]], client: str) -> TokenReply:
        """The answer to `GET /auth/token` with these Authorization values and query parameters."""
        caller: Principal | Denial | None = None
        if authorization:
            found = parse_authorization(authorization)
            if isinstance(found, BasicCredentials):
                caller = self._login(found.user, found.password, client)
            elif isinstance(found, Denial):
                caller = self._failed(found, client)
            else:
                caller = Denial(Reason.WRONG_SCHEME, detail="the token service takes Basic credentials")
        account = _one(params, "account")
        if isinstance(caller, Principal) and account and account != caller.name:
            return _error(400, "DENIED", "account does not match the user name of the credentials",
                          user=caller.name)
        return self._reply(caller, params)

    def answer_post(self, form: Mapping[str, Sequence[str]], client: str) -> TokenReply:
        """The answer to `POST /auth/token` (OAuth2 password grant) with this form."""
        grant = _one(form, "grant_type")
        if grant != "password":
            return TokenReply(400, {"error": "unsupported_grant_type",
                                    "error_description": "only grant_type=password is supported"})
        user, password = _one(form, "username") or "", _one(form, "password") or ""
        caller: Principal | Denial
        if not user:
            caller = self._failed(Denial(Reason.EMPTY_USER), client)
        elif not password:
            caller = self._failed(Denial(Reason.EMPTY_PASSWORD, user=user), client)
        else:
            caller = self._login(user, password, client)
        reply = self._reply(caller, {"service": form.get("service", []), "scope": form.get("scope", [])})
        if reply.status == 200:
            body = {k: v for k, v in reply.body.items() if k != "token"}
            body["scope"] = format_scopes(reply.granted)
            return TokenReply(200, body, reply.headers, reply.user, reply.granted)
        return reply

    def _login(self, user: str, password: str, client: str) -> Principal | Denial:
        if self.limiter is not None:
            wait = self.limiter.retry_after(client)
            if wait > 0:
                return Denial(Reason.RATE_LIMITED, user=user, retry_after=wait)
        found = self.users.verify(user, password)
        return self._failed(found, client) if isinstance(found, Denial) else found

    def _failed(self, denial: Denial, client: str) -> Denial:
        if self.limiter is not None and denial.reason is not Reason.RATE_LIMITED:
            self.limiter.failed(client)
        return denial

    def _reply(self, caller: Principal | Denial | None, params: Mapping[str, Sequence[str]]) -> TokenReply:
        if isinstance(caller, Denial):
            if caller.reason is Reason.RATE_LIMITED:
                retry = str(max(1, int(caller.retry_after + 0.999)))
                return _error(429, "TOOMANYREQUESTS", "too many failed logins; try again later",
                              headers={"Retry-After": retry}, user=caller.user, denial=caller)
            return _error(401, "UNAUTHORIZED", "authentication failed",
                          headers={"WWW-Authenticate": basic_challenge(self.service)}, user=caller.user,
                          denial=caller)
        user = caller.name if caller is not None else None
        service = _one(params, "service")
        if service is not None and service != self.service:
            return _error(400, "DENIED", f"this token service serves {self.service!r}, not {service[:100]!r}",
                          user=user)
        try:
            wanted = parse_scopes(params.get("scope") or [])
        except ScopeError as exc:
            return _error(400, "DENIED", str(exc), user=user)
        granted = self.grant(user, wanted)
        return TokenReply(200, self.issue(user, granted), user=user, granted=granted)

    def grant(self, user: str | None, wanted: Sequence[Access]) -> tuple[Access, ...]:
        """What a token for `user` asking for `wanted` grants: per repository scope, the actions the rules allow
        on its canonical name, under both names (see the module docstring)."""
        if self.canonical is None:
            return self.rules.grant(user, wanted)
        found: dict[Access, None] = {}
        for item in wanted:
            name = self.canonical(item.name) if item.type == "repository" else item.name
            for given in self.rules.grant(user, [Access(item.type, name, item.action)]):
                found[Access(item.type, item.name, given.action)] = None
                found[given] = None
        return tuple(found)

    def issue(self, user: str | None, granted: Sequence[Access]) -> dict[str, Any]:
        """The token answer granting `granted` to `user` (None: anonymous), valid for `lifetime` seconds."""
        now = int(self._clock())
        lifetime = int(self.lifetime)
        claims = {
            "iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + lifetime, "nbf": now,
            "iat": now, "jti": secrets.token_hex(16), "access": access_claim(granted),
        }
        token = sign_token(self.signer.signing_key(), claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": lifetime, "issued_at": issued}
