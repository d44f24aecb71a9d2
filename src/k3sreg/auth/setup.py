"""From the `auth` and `access` settings to the objects that enforce them: one `AccessController` for the
registry's requests and, with `auth.token.builtin`, the `TokenService` behind `/auth/token`.

    auth.htpasswd        controller "htpasswd": Basic against the file; anonymous callers only where an
                         `access` rule has `anonymous: true`; no rules: every user may do everything (Distribution)
    auth.token           controller "token": tokens of `rootcertbundle`/`jwks`, and of the built-in service
      .builtin           TokenService: users from its htpasswd, grants from the rules (no rules: every user
                         everything, anonymous callers nothing)
    auth.silly           controller "token" that takes any Authorization header (Distribution's development mode)

The realm the token challenge advertises: `realm` when set (with `autoredirect`: the request's own host); with
`builtin` and no `realm`, `<http.host>/auth/token`, else `/auth/token` on the scheme and host each request
used, which a client that reached the registry can reach too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from k3sreg.auth.controller import (
    AccessController,
    HtpasswdAuthenticator,
    SillyAuthenticator,
    TokenAuthenticator,
)
from k3sreg.auth.htpasswd import HtpasswdFile
from k3sreg.auth.keys import Trust
from k3sreg.auth.ratelimit import LoginLimiter
from k3sreg.auth.rules import AccessRules, Rule
from k3sreg.auth.service import TokenService
from k3sreg.auth.signing import KeyRing, Signer, StaticSigner
from k3sreg.auth.tokens import TokenVerifier
from k3sreg.config.access import AccessRuleSettings
from k3sreg.config.auth import AuthSettings, BuiltinTokenSettings, TokenSettings

TOKEN_PATH = "/auth/token"
"""Where the built-in token service answers (and, with `autoredirect`, `autoredirectpath` too)."""
EVERYTHING = Rule.of(users=["*"], repositories=["**"], actions=["*"])


@dataclass(frozen=True)
class AccessSetup:
    """What enforces the settings: the controller, the token service (built-in only), the paths it answers
    on, and the htpasswd files in use (whose problems a server reports)."""

    controller: AccessController
    service: TokenService | None = None
    token_paths: tuple[str, ...] = ()
    users: tuple[HtpasswdFile, ...] = ()


def access_rules(access: Sequence[AccessRuleSettings]) -> AccessRules | None:
    """The `access` rules, or None when there are none."""
    if not access:
        return None
    return AccessRules([Rule.of(r.users, r.anonymous, r.repositories, r.actions) for r in access])


def _signer(builtin: BuiltinTokenSettings, rootdirectory: str | None, create: bool) -> Signer | None:
    if builtin.signingkey:
        return StaticSigner(builtin.signingkey, builtin.signingcert or None)
    path = builtin.keyring_path(rootdirectory)
    assert path is not None  # the settings refuse a builtin service with nowhere to keep its keys
    if not create and not Path(path).exists():
        return None
    return KeyRing(path, builtin.expiration)


def token_realm(token: TokenSettings, host: str | None) -> tuple[str, str | None]:
    """(the realm to advertise, the path to build it from on the request's host, or None) for `auth.token`."""
    if token.autoredirect:
        return token.realm, token.autoredirectpath
    if token.realm:
        return token.realm, None
    if host:
        return host.rstrip("/") + TOKEN_PATH, None
    return "", TOKEN_PATH


def build_access(auth: AuthSettings, access: Sequence[AccessRuleSettings], host: str | None = None,
                 rootdirectory: str | None = None, canonical: Callable[[str], str] | None = None,
                 create_keys: bool = True) -> AccessSetup:
    """The enforcement of `auth` and `access`, reading every file they name (ConfigError when one cannot be
    used). `host` is `http.host`; `canonical` maps a repository name to the one a request for it touches;
    `create_keys` False leaves a missing keyring ungenerated (for checks before start)."""
    rules = access_rules(access)
    limiter = LoginLimiter()
    if auth.htpasswd is not None:
        users = HtpasswdFile(auth.htpasswd.path)
        anonymous = rules is not None and any(r.anonymous for r in rules.rules)
        controller = AccessController("htpasswd", HtpasswdAuthenticator(users, anonymous), auth.htpasswd.realm,
                                      rules=rules, limiter=limiter)
        return AccessSetup(controller, users=(users,))
    if auth.silly is not None:
        return AccessSetup(AccessController("token", SillyAuthenticator(), auth.silly.realm, auth.silly.service))
    token = auth.token
    assert token is not None
    trust = Trust.load(token.rootcertbundle, token.jwks)
    service = signer = None
    paths: tuple[str, ...] = ()
    files: tuple[HtpasswdFile, ...] = ()
    if token.builtin is not None:
        signer = _signer(token.builtin, rootdirectory, create_keys)
        users = HtpasswdFile(token.builtin.htpasswd)
        files = (users,)
        if signer is not None:
            service = TokenService(token.issuer, token.service, users, rules or AccessRules([EVERYTHING]), signer,
                                   token.builtin.expiration, limiter, canonical=canonical)
        paths = tuple(dict.fromkeys((TOKEN_PATH, token.autoredirectpath) if token.autoredirect else (TOKEN_PATH,)))
    verifier = TokenVerifier(token.issuer, token.service, trust, own=signer, algorithms=token.signingalgorithms)
    realm, auto_path = token_realm(token, host)
    controller = AccessController("token", TokenAuthenticator(verifier), realm, token.service, rules=rules,
                                  limiter=limiter, autoredirect_path=auto_path)
    return AccessSetup(controller, service, paths, files)


def describe(auth: AuthSettings, access: Sequence[AccessRuleSettings]) -> str:
    """One line for `serve`'s start-up: which controller, its files, the rules."""
    rules = f"{len(access)} access rule{'s' if len(access) != 1 else ''}" if access else "no access rules"
    if auth.htpasswd is not None:
        return f"htpasswd {auth.htpasswd.path} (realm {auth.htpasswd.realm!r}), {rules}"
    if auth.silly is not None:
        return "silly: any Authorization header passes (development only)"
    token = auth.token
    assert token is not None
    trusted = [f for f in (token.rootcertbundle, token.jwks) if f]
    parts = [f"token for service {token.service!r} from issuer {token.issuer!r}"]
    if trusted:
        parts.append("trusting " + " and ".join(trusted))
    if token.builtin is not None:
        parts.append(f"built-in service at {TOKEN_PATH} for the users of {token.builtin.htpasswd}")
    return ", ".join(parts) + f", {rules}"
