"""`proxy`: Distribution's single-upstream pull-through cache (k3sreg makes it one of its upstreams)."""

from __future__ import annotations

from pydantic import field_validator

from k3sreg.config.values import Duration, GoStr, Section, check_url


class ExecSettings(Section):
    """`proxy.exec`: a credential helper command (parsed; k3sreg uses `username`/`password`)."""

    command: GoStr
    lifetime: Duration | None = None


class ProxySettings(Section):
    """`proxy`: Distribution's single-upstream pull-through cache; `ttl` None means cached content never expires."""

    remoteurl: GoStr
    username: GoStr = ""
    password: GoStr = ""
    ttl: Duration | None = 168 * 3600.0
    exec: ExecSettings | None = None
    cachewritetimeout: Duration = 300.0

    @field_validator("remoteurl")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float | None) -> float | None:
        return value or None
