"""The registries.yaml model: exactly the keys K3s (rancher/wharfie) decodes, nothing more.

    mirrors:  {<registry>: {endpoint: [str], rewrite: {<RE2 pattern>: <replacement>}}}
    configs:  {<host[:port]>: {auth: {username, password, auth, identity_token},
                                tls: {ca_file, cert_file, key_file, insecure_skip_verify}}}
    auths:    {<endpoint>: <auth>}          legacy; decoded, never used by K3s

`auth`/`tls` are None when the key is absent or null and an (possibly empty) object when present: K3s
treats an empty `tls:` block as "has TLS config", which keeps a hosts.toml that would otherwise be dropped.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class AuthConfig(BaseModel):
    """Credentials K3s writes into containerd's config.toml (never into hosts.toml)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""

    def is_empty(self) -> bool:
        """Whether no credential field is set."""
        return not (self.username or self.password or self.auth or self.identity_token)


class TLSConfig(BaseModel):
    """TLS settings rendered into hosts.toml as `ca`, `client` and `skip_verify`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False

    def is_empty(self) -> bool:
        """Whether the block renders nothing."""
        return not (self.ca_file or self.cert_file or self.key_file or self.insecure_skip_verify)


class RegistryConfig(BaseModel):
    """One `configs` entry, keyed by the host a request goes to."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None


class Mirror(BaseModel):
    """One `mirrors` entry: endpoints in the order containerd tries them, and repository rewrites."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    endpoint: list[str] = Field(default_factory=list)
    rewrite: dict[str, str] = Field(default_factory=dict)


class Registries(BaseModel):
    """A decoded registries.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    mirrors: dict[str, Mirror] = Field(default_factory=dict)
    configs: dict[str, RegistryConfig] = Field(default_factory=dict)
    auths: dict[str, AuthConfig] = Field(default_factory=dict)


# The schema as data, for the decoder and the unknown-key suggestions: field name → kind.
AUTH_FIELDS = {"username": "str", "password": "str", "auth": "str", "identity_token": "str"}
TLS_FIELDS = {"ca_file": "str", "cert_file": "str", "key_file": "str", "insecure_skip_verify": "bool"}
CONFIG_FIELDS = {"auth": "auth", "tls": "tls"}
MIRROR_FIELDS = {"endpoint": "list", "rewrite": "strmap"}
TOP_FIELDS = {"mirrors": "mirrors", "configs": "configs", "auths": "auths"}
