"""`auth`: exactly one access controller (htpasswd, token or silly), with Distribution's keys."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import GoStr, Section, StrList

AUTH_TYPES = ("htpasswd", "token", "silly")


class HtpasswdSettings(Section):
    """`auth.htpasswd`: Basic auth against an htpasswd file (bcrypt entries)."""

    realm: GoStr
    path: GoStr


class TokenSettings(Section):
    """`auth.token`: Bearer tokens issued by an external service, checked against `rootcertbundle` or `jwks`."""

    realm: GoStr
    service: GoStr
    issuer: GoStr
    rootcertbundle: GoStr = ""
    jwks: GoStr = ""
    autoredirect: bool = False
    autoredirectpath: GoStr = "/auth/token"
    signingalgorithms: StrList = Field(default_factory=list)

    @model_validator(mode="after")
    def _keys(self) -> TokenSettings:
        if not self.rootcertbundle and not self.jwks:
            raise problem("set 'rootcertbundle' (PEM certificates of the token signer) or 'jwks'")
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
