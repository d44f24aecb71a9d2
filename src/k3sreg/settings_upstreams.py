"""k3sreg's own config.yml sections (Distribution has none of these): `upstreams`, `names`, `limits`."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, field_validator, model_validator

from k3sreg.settings_http import check_registry_host
from k3sreg.settings_types import Duration, GoStr, Section, Size, problem
from k3sreg.settings_units import show_value

DOCKER_HUB_HOSTS = ("registry-1.docker.io", "index.docker.io", "registry.hub.docker.com", "docker.io")
"""Hosts that are the registry image references call `docker.io`."""


def check_url(value: str) -> str:
    """An upstream URL: http or https scheme and a host, no trailing slash. Raises a user-facing error."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem(f"expected an http:// or https:// URL such as 'https://registry-1.docker.io', got {value!r}")
    return value.strip().rstrip("/")


def registry_name_for_url(url: str) -> str:
    """The registry name clients use for `url`: `docker.io` for Docker Hub, else the URL's host[:port]."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in DOCKER_HUB_HOSTS:
        return "docker.io"
    return parts.netloc.rsplit("@", 1)[-1].lower()


def _registry_host(value: Any) -> Any:
    if not isinstance(value, str):
        raise problem(f"expected a registry host such as 'docker.io' or '127.0.0.1:5000', got {show_value(value)}")
    try:
        return check_registry_host(value.strip())
    except ValueError:
        raise problem(
            f"expected a registry host such as 'docker.io' or '127.0.0.1:5000' (no scheme, no path), got {value!r}"
        ) from None


RegistryHost = Annotated[str, BeforeValidator(_registry_host)]
"""A registry host as image references spell it (`docker.io`, `127.0.0.1:30500`), lower-cased."""


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

    name: RegistryHost
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


class LimitsSettings(Section):
    """`limits`: request sizes and body timeouts (k3sreg's; Distribution hard-codes some of these)."""

    manifestsize: Size = 4 * 1024 * 1024
    blobsize: Size = 0
    bodytimeout: Duration = 60.0

    @field_validator("manifestsize")
    @classmethod
    def _manifest(cls, value: int) -> int:
        if value <= 0:
            raise problem("expected a size above zero such as '4MiB'")
        return value

    @field_validator("bodytimeout")
    @classmethod
    def _body(cls, value: float) -> float:
        if value <= 0:
            raise problem("expected a duration above zero such as '60s'")
        return value
