"""`upstreams` (k3sreg's own): the registries to pull through, each chosen by containerd's `ns` or a path prefix."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import Duration, GoStr, ReferenceHost, Section, Size, check_url


class UpstreamTLSSettings(Section):
    """`upstreams[].tls`: how to trust the upstream, and an optional client certificate."""

    ca: GoStr | None = None
    insecureskipverify: bool = False
    certificate: GoStr | None = None
    key: GoStr | None = None

    @model_validator(mode="after")
    def _pair(self) -> UpstreamTLSSettings:
        if bool(self.certificate) != bool(self.key):
            missing = "key" if self.certificate else "certificate"
            raise problem(f"a client 'certificate' and its 'key' go together; add '{missing}'")
        return self


class UpstreamSettings(Section):
    """`upstreams[]`: one registry to pull through, chosen by containerd's `ns` (= `name`) or a path prefix.

    `ttl` None keeps cached content until removed by hand; `tagttl` is how long a tag is trusted before it is
    re-checked upstream; `offline` never contacts the upstream.
    """

    name: ReferenceHost
    url: GoStr
    username: GoStr = ""
    password: GoStr = ""
    ttl: Duration | None = None
    tagttl: Duration = 300.0
    tagtimeout: Duration = 3.0
    offline: bool = False
    tls: UpstreamTLSSettings = Field(default_factory=UpstreamTLSSettings)
    timeout: Duration = 10.0
    retries: int = Field(default=2, ge=0)
    maxsize: Size = 0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(value)

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, value: float | None) -> float | None:
        return value or None

    @field_validator("timeout", "tagtimeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise problem("expected a duration above zero such as '10s'")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> UpstreamSettings:
        if bool(self.username) != bool(self.password):
            missing = "password" if self.username else "username"
            raise problem(f"'username' and 'password' go together; add '{missing}'")
        return self
