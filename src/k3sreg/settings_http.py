"""The `log`, `http` and `health` sections of config.yml, with Distribution's keys and defaults."""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from k3sreg.settings_types import Duration, GoStr, Section, StrList, problem
from k3sreg.settings_units import show_value

_PORT = r"(?P<port>\d{1,5})"
_HOSTPORT = re.compile(rf"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\s:\[\]]*)):{_PORT}$")
_DNS_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
_REGISTRY_HOST = re.compile(rf"^(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{{1,5}}))?$")


def split_host_port(addr: str) -> tuple[str | None, int]:
    """`":5000"` -> (None, 5000), `"127.0.0.1:5000"` -> ("127.0.0.1", 5000), `"[::1]:5000"` -> ("::1", 5000).

    Raises ValueError when `addr` is not host:port with a port from 0 to 65535.
    """
    m = _HOSTPORT.match(addr.strip())
    if m is None or int(m.group("port")) > 65535:
        raise ValueError(addr)
    host = m.group("v6") or m.group("host") or None
    return host, int(m.group("port"))


def check_registry_host(name: str) -> str:
    """A registry host as image references spell it (`docker.io`, `127.0.0.1:30500`), lower-cased.

    Raises ValueError when `name` is not host[:port].
    """
    m = _REGISTRY_HOST.match(name)
    if m is None or (m.group("port") is not None and int(m.group("port")) > 65535):
        raise ValueError(name)
    return name.lower()


def normalise_level(value: Any) -> Any:
    """Log levels as Distribution (logrus) accepts them: any case, and `warning` for `warn`."""
    if isinstance(value, str):
        low = value.strip().lower()
        return "warn" if low == "warning" else low
    return value


class AccessLogSettings(Section):
    """`log.accesslog`."""

    disabled: bool = False


class LogSettings(Section):
    """`log`: level, formatter, static fields added to every line, access log switch."""

    level: Literal["error", "warn", "info", "debug"] = "info"
    formatter: Literal["text", "json", "logstash"] = "text"
    fields: dict[str, Any] = Field(default_factory=dict)
    accesslog: AccessLogSettings = Field(default_factory=AccessLogSettings)
    hooks: list[Any] = Field(default_factory=list)
    reportcaller: bool = False

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return normalise_level(value)

    @field_validator("formatter", mode="before")
    @classmethod
    def _formatter(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class LetsEncryptSettings(Section):
    """`http.tls.letsencrypt`: parsed so a Distribution file loads; k3sreg does not run ACME."""

    cachefile: GoStr = ""
    email: GoStr = ""
    hosts: StrList = Field(default_factory=list)
    directoryurl: GoStr = ""


class TLSSettings(Section):
    """`http.tls`: serve HTTPS with `certificate` and `key`; `clientcas` asks clients for certificates."""

    certificate: GoStr = ""
    key: GoStr = ""
    clientcas: StrList = Field(default_factory=list)
    clientauth: Literal[
        "request-client-cert",
        "require-any-client-cert",
        "verify-client-cert-if-given",
        "require-and-verify-client-cert",
    ] = "require-and-verify-client-cert"
    minimumtls: Literal["tls1.0", "tls1.1", "tls1.2", "tls1.3"] = "tls1.2"
    ciphersuites: StrList = Field(default_factory=list)
    letsencrypt: LetsEncryptSettings | None = None

    @model_validator(mode="after")
    def _pair(self) -> TLSSettings:
        if bool(self.certificate) != bool(self.key):
            missing = "key" if self.certificate else "certificate"
            raise problem(f"'certificate' and 'key' go together; add '{missing}' (a PEM file path)")
        return self

    @property
    def enabled(self) -> bool:
        """True when the server must speak TLS (a certificate, or Let's Encrypt, is configured)."""
        return bool(self.certificate) or bool(self.letsencrypt and self.letsencrypt.cachefile)


class PrometheusSettings(Section):
    """`http.debug.prometheus`."""

    enabled: bool = False
    path: GoStr = "/metrics"


class DebugSettings(Section):
    """`http.debug`: a second listener for diagnostics (Distribution's pprof/metrics port)."""

    addr: GoStr = ""
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)


class HTTP2Settings(Section):
    """`http.http2`."""

    disabled: bool = False


class H2CSettings(Section):
    """`http.h2c`."""

    enabled: bool = False


class HTTPSettings(Section):
    """`http`: where and how the registry listens, and what it puts in every response."""

    net: Literal["tcp", "unix"] = "tcp"
    addr: str = ":5000"
    host: str | None = None
    prefix: GoStr = ""
    secret: GoStr | None = None
    relativeurls: bool = False
    draintimeout: Duration = 0.0
    headers: dict[str, StrList] = Field(default_factory=dict)
    tls: TLSSettings | None = None
    debug: DebugSettings | None = None
    http2: HTTP2Settings = Field(default_factory=HTTP2Settings)
    h2c: H2CSettings = Field(default_factory=H2CSettings)

    @field_validator("addr", mode="before")
    @classmethod
    def _addr(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("net", "tcp") == "unix":
            if not isinstance(value, str) or not value.strip():
                raise problem(f"expected the path of a unix socket, got {show_value(value)}")
            return value
        if isinstance(value, str):
            try:
                split_host_port(value)
                return value.strip()
            except ValueError:
                pass
        raise problem(f"expected host:port such as ':5000' or '127.0.0.1:5000', got {show_value(value)}")

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Any:
        if value == "":
            return None
        if not isinstance(value, str):
            raise problem(f"expected a URL such as 'https://registry.example.com', got {show_value(value)}")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise problem(
                f"expected the external URL of the registry such as 'https://registry.example.com', got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        # Routing needs one spelling: "/registry" (leading slash, no trailing one), "" for none.
        value = value.strip().strip("/")
        return f"/{value}" if value else ""

    @field_validator("secret", mode="after")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("tls", mode="after")
    @classmethod
    def _tls(cls, value: TLSSettings | None) -> TLSSettings | None:
        # Distribution serves plain HTTP when neither a certificate nor Let's Encrypt is set.
        if value is not None and not value.enabled:
            if value.clientcas:
                raise problem("'clientcas' needs http.tls.certificate and http.tls.key")
            return None
        return value

    def bind(self) -> tuple[str | None, int]:
        """(host, port) to listen on for `net: tcp`; host None means every interface."""
        if self.net != "tcp":
            raise ValueError(f"http.net is {self.net!r}; listen on the socket path http.addr instead")
        return split_host_port(self.addr)


class StorageDriverCheck(Section):
    """`health.storagedriver`: periodically check that the storage answers."""

    enabled: bool = False
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class FileCheck(Section):
    """`health.file[]`: unhealthy while `file` exists."""

    file: GoStr
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class HTTPCheck(Section):
    """`health.http[]`: unhealthy while `uri` does not answer `statuscode`."""

    uri: GoStr
    headers: dict[str, StrList] = Field(default_factory=dict)
    statuscode: int = 200
    timeout: Duration = 1.0
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class TCPCheck(Section):
    """`health.tcp[]`: unhealthy while `addr` refuses connections."""

    addr: GoStr
    timeout: Duration = 1.0
    interval: Duration = 10.0
    threshold: int = Field(default=0, ge=0)


class HealthSettings(Section):
    """`health`: checks behind Distribution's `/debug/health`."""

    storagedriver: StorageDriverCheck = Field(default_factory=StorageDriverCheck)
    file: list[FileCheck] = Field(default_factory=list)
    http: list[HTTPCheck] = Field(default_factory=list)
    tcp: list[TCPCheck] = Field(default_factory=list)
