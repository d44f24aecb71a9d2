"""`http`: where and how the registry listens (address, TLS, headers, debug listener), as Distribution reads it."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from k3sreg.config.problems import problem
from k3sreg.config.values import Duration, GoStr, Section, StrList, split_listen_address
from k3sreg.problems import show_value

DEFAULT_DRAIN = 55.0
"""Seconds that requests in flight get to finish on SIGTERM when `http.draintimeout` is not set: the drain and
the exit that follows fit in the 60 s Kubernetes waits before SIGKILL (terminationGracePeriodSeconds)."""


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
    draintimeout: Duration | None = None
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
                split_listen_address(value)
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

    @property
    def drain(self) -> float:
        """Seconds requests in flight get to finish on SIGTERM (`draintimeout`, else DEFAULT_DRAIN); 0: none."""
        return DEFAULT_DRAIN if self.draintimeout is None else self.draintimeout

    def bind(self) -> tuple[str | None, int]:
        """(host, port) to listen on for `net: tcp`; host None means every interface."""
        if self.net != "tcp":
            raise ValueError(f"http.net is {self.net!r}; listen on the socket path http.addr instead")
        return split_listen_address(self.addr)
