"""The one Settings model: Distribution's config.yml (version 0.1) as it is, plus k3sreg's own keys.

    load_settings(path, env)
      file (or the embedded defaults) ──► YAML (numbers keep their text) ──► REGISTRY_* overrides
      ──► storage driver choice check ──► pydantic models (extra keys forbidden) ──► the TLS files
      ──► every problem as one line "key.path: what is wrong; the fix" ──► ConfigError(problems)

Sections Distribution knows but k3sreg does not act on (middleware, notifications, redis, reporting,
validation, compatibility, policy) are kept as plain data so a registry:2 file loads unchanged. The full
reference of every key is docs/configuration.md.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from k3sreg.errors import ConfigError
from k3sreg.problems import describe, key_path
from k3sreg.settings_env import Loc, apply_env, type_at
from k3sreg.settings_http import HealthSettings, HTTPSettings, LogSettings, normalise_level
from k3sreg.settings_storage import (
    OTHER_DRIVERS,
    AuthSettings,
    ProxySettings,
    StorageSettings,
    storage_problems,
)
from k3sreg.settings_tls import tls_file_problems
from k3sreg.settings_types import ERROR_TYPE, ConfigLoader, GoStr, Section, problem
from k3sreg.settings_units import show_value
from k3sreg.settings_upstreams import (
    LimitsSettings,
    RegistryHost,
    UpstreamSettings,
    registry_name_for_url,
)

__all__ = ["EMBEDDED_DEFAULTS", "ConfigError", "Settings", "load_settings", "parse_settings"]

EMBEDDED_DEFAULTS: dict[str, Any] = {
    "version": "0.1",
    "http": {"addr": "127.0.0.1:5000"},
    "storage": {
        "filesystem": {"rootdirectory": "./data"},
        "delete": {"enabled": True},
        "maintenance": {"uploadpurging": {"enabled": True, "age": "168h", "interval": "24h"}},
    },
}
"""What `k3sreg serve` runs with when no config file is given (environment overrides still apply)."""


class CatalogSettings(Section):
    """`catalog`: the most repositories one `/v2/_catalog` page returns."""

    maxentries: int = 1000

    @field_validator("maxentries")
    @classmethod
    def _default(cls, value: int) -> int:
        return value if value > 0 else 1000


class TagsSettings(Section):
    """`tags`: the most tags one `/v2/<name>/tags/list` page returns."""

    maxtags: int = Field(default=1000, ge=0)

    @field_validator("maxtags")
    @classmethod
    def _default(cls, value: int) -> int:
        return value or 1000


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
    names: list[RegistryHost] = Field(default_factory=list)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

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
        proxied = self.proxy_upstream
        if proxied is not None and proxied.name in listed:
            raise problem(
                f"proxy: the proxy section already makes the upstream {proxied.name!r}; "
                "remove it from upstreams or remove the proxy section"
            )
        return self

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


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None, *,
                  check_files: bool = False) -> Settings:
    """Read, override from `REGISTRY_*` variables and validate the settings; ConfigError lists every problem.

    `path` None uses EMBEDDED_DEFAULTS; `env` None uses os.environ. `check_files` also checks the files the
    settings name (TLS certificate, key, client CAs), as a server about to use them needs.
    """
    if path is None:
        raw: Any = copy.deepcopy(EMBEDDED_DEFAULTS)
    else:
        raw = _read_file(path)
    return parse_settings(raw, env, source=str(path) if path else "the embedded defaults", check_files=check_files)


def parse_settings(raw: Any, env: Mapping[str, str] | None = None, source: str = "config", *,
                   check_files: bool = False) -> Settings:
    """Validate an already-parsed config document (as `yaml.safe_load` gives it) after applying `env`.

    `raw` is modified by the overrides; `source` names it in messages. ConfigError lists every problem.
    """
    env = os.environ if env is None else env
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            [f"{source}: expected a mapping of sections (version, log, storage, http...), got {show_value(raw)}"]
        )
    applied, problems = apply_env(raw, env, Settings)
    found: list[tuple[Loc, str]] = []
    if "version" not in raw:
        found.append((("version",), "required; add 'version: 0.1' at the top"))
    driver_issues = storage_problems(raw.get("storage", {}))
    found += driver_issues
    if isinstance(raw.get("storage"), dict):
        raw["storage"] = {k: v for k, v in raw["storage"].items() if k not in OTHER_DRIVERS}
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if loc == ("version",) and err["type"] == "missing":
                continue
            if loc == ("storage",) and (err["type"] == "missing" or (driver_issues and err["type"] == ERROR_TYPE)):
                continue  # already said by storage_problems
            found.append((loc, describe(err, _keys_at)))
    if check_files and settings is not None and settings.http.tls is not None:
        found += tls_file_problems(settings.http.tls)
    problems += [_line(loc, msg, applied) for loc, msg in found]
    if problems or settings is None:
        raise ConfigError(problems)
    return settings


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"{path}: cannot read the config file: {reason}"]) from None
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError([f"{where}: YAML syntax error: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML syntax error: {exc}"]) from None


def _line(loc: Loc, message: str, applied: dict[Loc, str]) -> str:
    # Name the variable that set this key, or a key below it (e.g. REGISTRY_STORAGE_S3_REGION for "storage").
    source = next(
        (name for where, name in applied.items() if loc and (loc[: len(where)] == where or where[: len(loc)] == loc)),
        None,
    )
    where = key_path(loc)
    if not where:
        return message
    return f"{where} (from {source}): {message}" if source else f"{where}: {message}"


def _keys_at(loc: Loc) -> list[str] | None:
    kind, section = type_at(Settings, loc)
    if kind == "model" and isinstance(section, type) and issubclass(section, BaseModel):
        return list(section.model_fields)
    return None
