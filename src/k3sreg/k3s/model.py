"""The registries.yaml model: exactly the keys K3s (rancher/wharfie) decodes, nothing more.

    mirrors:  {<registry>: {endpoint: [str], rewrite: {<RE2 pattern>: <replacement>}}}
    configs:  {<host[:port]>: {auth: {username, password, auth, identity_token},
                                tls: {ca_file, cert_file, key_file, insecure_skip_verify}}}
    auths:    {<endpoint>: <auth>}          legacy; decoded, never used by K3s

`auth`/`tls` are None when the key is absent or null and an (possibly empty) object when present: K3s
treats an empty `tls:` block as "has TLS config", which keeps a hosts.toml that would otherwise be dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Plain frozen dataclasses, not pydantic: `decode` already checks every value the way K3s does, and
# `k3sreg mirrors validate` starts in half the time without importing pydantic.


@dataclass(frozen=True)
class AuthConfig:
    """Credentials K3s writes into containerd's config.toml (never into hosts.toml)."""

    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""

    def is_empty(self) -> bool:
        """Whether no credential field is set."""
        return not (self.username or self.password or self.auth or self.identity_token)


@dataclass(frozen=True)
class TLSConfig:
    """TLS settings rendered into hosts.toml as `ca`, `client` and `skip_verify`."""

    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def is_empty(self) -> bool:
        """Whether the block renders nothing."""
        return not (self.ca_file or self.cert_file or self.key_file or self.insecure_skip_verify)


@dataclass(frozen=True)
class HostSettings:
    """One `configs` entry, keyed by the host a request goes to."""

    auth: AuthConfig | None = None
    tls: TLSConfig | None = None


@dataclass(frozen=True)
class Mirror:
    """One `mirrors` entry: endpoints in the order containerd tries them, and repository rewrites."""

    endpoint: list[str] = field(default_factory=list)
    rewrite: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RegistriesYaml:
    """A decoded registries.yaml."""

    mirrors: dict[str, Mirror] = field(default_factory=dict)
    configs: dict[str, HostSettings] = field(default_factory=dict)
    auths: dict[str, AuthConfig] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> RegistriesYaml:
        """The model of the plain data `decode` builds (every value already of the right type)."""
        def config(entry: dict[str, Any]) -> HostSettings:
            auth, tls = entry.get("auth"), entry.get("tls")
            return HostSettings(auth=AuthConfig(**auth) if auth is not None else None,
                                  tls=TLSConfig(**tls) if tls is not None else None)

        return cls(mirrors={k: Mirror(endpoint=list(v.get("endpoint", [])), rewrite=dict(v.get("rewrite", {})))
                            for k, v in data.get("mirrors", {}).items()},
                   configs={k: config(v) for k, v in data.get("configs", {}).items()},
                   auths={k: AuthConfig(**v) for k, v in data.get("auths", {}).items()})

    def as_data(self) -> dict[str, Any]:
        """Plain data (dicts, lists, strings), without the blocks that are absent: what a file would hold."""
        def strip(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if v is not None}
            return value

        return dict(strip(asdict(self)))


# The schema as data, for the decoder and the unknown-key suggestions: field name → kind.
AUTH_FIELDS = {"username": "str", "password": "str", "auth": "str", "identity_token": "str"}
TLS_FIELDS = {"ca_file": "str", "cert_file": "str", "key_file": "str", "insecure_skip_verify": "bool"}
CONFIG_FIELDS = {"auth": "auth", "tls": "tls"}
MIRROR_FIELDS = {"endpoint": "list", "rewrite": "strmap"}
TOP_FIELDS = {"mirrors": "mirrors", "configs": "configs", "auths": "auths"}
