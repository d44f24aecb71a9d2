"""`auth`: exactly one access controller (htpasswd, token or silly), with Distribution's keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import Duration, GoStr, Section, StrList

AUTH_TYPES = ("htpasswd", "token", "silly")
SIGNING_ALGORITHMS = ("EdDSA", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
                      "PS256", "PS384", "PS512")
"""The names Distribution accepts in `auth.token.signingalgorithms`; k3sreg never verifies the HMAC ones."""
DEFAULT_KEYRING = "k3sreg/token-keys.json"
"""Where the built-in token service keeps its generated keys, below `storage.filesystem.rootdirectory`."""


class HtpasswdSettings(Section):
    """`auth.htpasswd`: Basic auth against an htpasswd file (bcrypt entries)."""

    realm: GoStr
    path: GoStr


class BuiltinTokenSettings(Section):
    """`auth.token.builtin` (k3sreg): issue tokens at `/auth/token` for users of an htpasswd file, as the
    `access` rules allow. Signs with `signingkey` (and sends `signingcert` as x5c) when set, else with keys it
    generates into `keyring` (default `<rootdirectory>/k3sreg/token-keys.json`)."""

    htpasswd: GoStr
    expiration: Duration = 300.0
    signingkey: GoStr = ""
    signingcert: GoStr = ""
    keyring: GoStr = ""

    @model_validator(mode="after")
    def _keys(self) -> BuiltinTokenSettings:
        if self.signingcert and not self.signingkey:
            raise problem("'signingcert' is the certificate of 'signingkey'; set 'signingkey' too")
        if self.signingkey and self.keyring:
            raise problem("'signingkey' (a key you manage) and 'keyring' (keys k3sreg makes) exclude each other; "
                          "keep one")
        if not 10 <= self.expiration <= 86400:
            raise problem("'expiration' must be between 10s and 24h; short lives limit what a leaked token is worth")
        return self

    def keyring_path(self, rootdirectory: str | None) -> str | None:
        """The keyring file to use: `keyring`, else the default under `rootdirectory`; None with `signingkey`."""
        if self.signingkey:
            return None
        if self.keyring:
            return self.keyring
        return f"{rootdirectory.rstrip('/')}/{DEFAULT_KEYRING}" if rootdirectory else None


class TokenSettings(Section):
    """`auth.token`: Bearer tokens checked against `rootcertbundle` or `jwks` (Distribution's keys, same meaning),
    and, with `builtin`, also tokens k3sreg issues itself. With `builtin`, `realm` may be left out: the registry
    then advertises its own `/auth/token` (under `http.host`, else on the host and scheme each request used)."""

    realm: GoStr = ""
    service: GoStr
    issuer: GoStr
    rootcertbundle: GoStr = ""
    jwks: GoStr = ""
    autoredirect: bool = False
    autoredirectpath: GoStr = "/auth/token"
    signingalgorithms: StrList = Field(default_factory=list)
    builtin: BuiltinTokenSettings | None = None

    @model_validator(mode="after")
    def _keys(self) -> TokenSettings:
        if not self.realm and self.builtin is None:
            raise problem("'realm' is required: the URL of the token service clients are sent to (or add "
                          "'builtin' and k3sreg serves /auth/token itself)")
        if not self.rootcertbundle and not self.jwks and self.builtin is None:
            raise problem("set 'rootcertbundle' (PEM certificates of the token signer), 'jwks', or 'builtin' "
                          "(k3sreg issues the tokens)")
        unknown = [a for a in self.signingalgorithms if a not in SIGNING_ALGORITHMS]
        if unknown:
            raise problem(f"signingalgorithms: unknown algorithm {unknown[0]!r}; "
                          f"known: {', '.join(SIGNING_ALGORITHMS)}")
        if self.builtin is not None and self.signingalgorithms and not self.builtin.signingkey \
                and "ES256" not in self.signingalgorithms:
            raise problem("the built-in token service signs with ES256; add it to 'signingalgorithms'")
        return self


class SillySettings(Section):
    """`auth.silly`: any Authorization header is accepted (development only)."""

    realm: GoStr
    service: GoStr


class AuthSettings(Section):
    """`auth`: exactly one of htpasswd, token or silly."""

    htpasswd: HtpasswdSettings | None = None
    token: TokenSettings | None = None
    silly: SillySettings | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {data: {}}
        if isinstance(data, dict):
            return {k: {} if v is None else v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _one(self) -> AuthSettings:
        chosen = [k for k in AUTH_TYPES if getattr(self, k) is not None]
        if len(chosen) != 1:
            got = ", ".join(chosen) if chosen else "none"
            raise problem(f"exactly one of htpasswd, token or silly is required, got {got}")
        return self

    @property
    def kind(self) -> Literal["htpasswd", "token", "silly"]:
        """The configured access controller's name."""
        if self.token is not None:
            return "token"
        if self.silly is not None:
            return "silly"
        return "htpasswd"
