"""The root of the one Settings model: every section of config.yml, and the checks that span sections.

Sections Distribution knows but k3sreg does not act on (middleware, notifications, redis, reporting,
validation, compatibility, policy) are kept as plain data so a registry:2 file loads unchanged.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from k3sreg.config.access import AccessRuleSettings
from k3sreg.config.auth import AuthSettings
from k3sreg.config.catalog import CatalogSettings
from k3sreg.config.health import HealthSettings
from k3sreg.config.http import HTTPSettings
from k3sreg.config.limits import LimitsSettings
from k3sreg.config.log import LogSettings, normalise_level
from k3sreg.config.problems import problem
from k3sreg.config.proxy import ProxySettings
from k3sreg.config.storage import StorageSettings
from k3sreg.config.tags import TagsSettings
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.config.values import GoStr, ReferenceHost, Section, registry_name_for_url
from k3sreg.config.web import WebSettings


class Settings(Section):
    """Everything `k3sreg serve` needs, validated; build it with `load_settings`."""

    version: GoStr
    log: LogSettings = Field(default_factory=LogSettings)
    loglevel: Literal["error", "warn", "info", "debug"] | None = None
    storage: StorageSettings
    http: HTTPSettings = Field(default_factory=HTTPSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    proxy: ProxySettings | None = None
    auth: AuthSettings | None = None
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    tags: TagsSettings = Field(default_factory=TagsSettings)
    middleware: dict[str, Any] | None = None
    notifications: dict[str, Any] | None = None
    redis: dict[str, Any] | None = None
    reporting: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    compatibility: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    # k3sreg's own keys
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    names: list[ReferenceHost] = Field(default_factory=list)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    access: list[AccessRuleSettings] = Field(default_factory=list)
    web: WebSettings = Field(default_factory=WebSettings)

    @field_validator("version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value.strip() != "0.1":
            raise problem(f"only version 0.1 exists (as in Distribution), got {value!r}; write version: 0.1")
        return "0.1"

    @field_validator("loglevel", mode="before")
    @classmethod
    def _loglevel(cls, value: Any) -> Any:
        return normalise_level(value)

    @field_validator("names", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("proxy", mode="before")
    @classmethod
    def _proxy(cls, value: Any) -> Any:
        # Distribution turns proxy mode on only when remoteurl is set; an empty section is no proxy.
        if isinstance(value, dict) and not value.get("remoteurl"):
            rest = {k: v for k, v in value.items() if k != "remoteurl" and v not in (None, "")}
            return value if rest else None
        return value

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, value: Any) -> Any:
        # An empty `auth: {}` means no access control, as in Distribution.
        return None if value == {} else value

    @field_validator("upstreams")
    @classmethod
    def _unique(cls, value: list[UpstreamSettings]) -> list[UpstreamSettings]:
        seen: set[str] = set()
        for up in value:
            if up.name in seen:
                raise problem(f"the upstream name {up.name!r} appears twice; names must be unique")
            seen.add(up.name)
        return value

    @model_validator(mode="after")
    def _cross(self) -> Settings:
        if self.loglevel and "level" not in self.log.model_fields_set:
            # The deprecated top-level `loglevel` still counts when `log.level` is not set.
            self.log = self.log.model_copy(update={"level": self.loglevel})
        own = set(self.names)
        listed = {u.name for u in self.upstreams}
        clash = sorted(own & {u.name for u in self.effective_upstreams})
        if clash:
            raise problem(f"names: {clash[0]!r} is both this registry's own name and an upstream; remove one")
        self._check_auth()
        proxied = self.proxy_upstream
        if self.storage.driver == "inmemory" and self.effective_upstreams:
            # Fills stage the download in a file that every worker can follow; memory has no such file.
            raise problem("storage.inmemory cannot hold a pull-through cache (upstreams or proxy): "
                          "use storage.filesystem")
        if proxied is not None and proxied.name in listed:
            raise problem(
                f"proxy: the proxy section already makes the upstream {proxied.name!r}; "
                "remove it from upstreams or remove the proxy section"
            )
        return self

    def _check_auth(self) -> None:
        if self.access and (self.auth is None or self.auth.kind == "silly"):
            raise problem("access: rules need auth.htpasswd or auth.token to know who is asking; add one")
        token = self.auth.token if self.auth else None
        fs = self.storage.filesystem
        root = str(fs.rootdirectory) if fs is not None else None
        if token and token.builtin and not token.builtin.signingkey and token.builtin.keyring_path(root) is None:
            raise problem("auth.token.builtin: set 'keyring' (a file for the generated signing keys) or "
                          "'signingkey'; with this storage driver there is no root directory to keep them in")

    @property
    def proxy_upstream(self) -> UpstreamSettings | None:
        """The upstream Distribution's `proxy:` section stands for, if it is set."""
        if self.proxy is None:
            return None
        return UpstreamSettings(
            name=registry_name_for_url(self.proxy.remoteurl),
            url=self.proxy.remoteurl,
            username=self.proxy.username,
            password=self.proxy.password,
            ttl=self.proxy.ttl,
        )

    @property
    def effective_upstreams(self) -> list[UpstreamSettings]:
        """Every upstream to pull through: the `proxy:` one first (if set), then `upstreams`."""
        proxied = self.proxy_upstream
        return ([proxied] if proxied else []) + list(self.upstreams)

    @property
    def default_upstream(self) -> UpstreamSettings | None:
        """Where a request without `ns` for a name nobody pushed goes: the `proxy:` upstream, as in registry:2."""
        return self.proxy_upstream

    def upstream(self, ns: str) -> UpstreamSettings | None:
        """The upstream whose registry name is `ns` (case-insensitive), or None."""
        ns = ns.lower()
        return next((u for u in self.effective_upstreams if u.name == ns), None)

    @property
    def own_names(self) -> list[str]:
        """The registry names that mean this registry itself: `names`, plus the host of `http.host` if set."""
        found = list(self.names)
        if self.http.host:
            netloc = urlsplit(self.http.host).netloc.rsplit("@", 1)[-1].lower()
            if netloc and netloc not in found:
                found.append(netloc)
        return found

    def is_own_name(self, ns: str) -> bool:
        """True when `ns` names this registry itself (see `own_names`), so it means a local repository."""
        return ns.lower() in self.own_names
