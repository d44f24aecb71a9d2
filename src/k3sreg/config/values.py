"""The value types config.yml uses (strings as Go reads them, durations, sizes, hosts, URLs), the YAML loader
that keeps the text of numbers, and `Section`, the base of every section model.

Distribution reads config.yml with Go's YAML decoder, which puts a scalar into a string field with its text
as written (`version: 0.1` is "0.1", `secret: 0123` is "0123"). PyYAML would turn those into numbers, so the
loader here keeps the source text of every number, and `GoStr` gives it back.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from k3sreg.config.problems import problem
from k3sreg.config.units import duration_seconds, size_bytes
from k3sreg.oci.reference import DOCKER_HUB, DOCKER_HUB_HOSTS
from k3sreg.problems import show_value


class YamlInt(int):
    """An integer that remembers how it was spelled in YAML."""

    text: str


class YamlFloat(float):
    """A float that remembers how it was spelled in YAML."""

    text: str


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps the source text of numbers (see the module docstring)."""


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlInt:
    value = YamlInt(yaml.SafeLoader.construct_yaml_int(loader, node))
    value.text = node.value
    return value


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> YamlFloat:
    value = YamlFloat(yaml.SafeLoader.construct_yaml_float(loader, node))
    value.text = node.value
    return value


ConfigLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def go_str(value: Any) -> Any:
    """A scalar as Go's decoder puts it into a string field: numbers as written, booleans as true/false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, YamlInt | YamlFloat):
        return value.text
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list):
        raise problem(f"expected a string, got {show_value(value)}")
    return value


def _duration(value: Any) -> float:
    # Numbers from YAML follow Go (nanoseconds); numbers given from Python code are seconds.
    if isinstance(value, int | float) and not isinstance(value, bool | YamlInt | YamlFloat):
        return _duration(f"{value}s")
    try:
        return duration_seconds(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _size(value: Any) -> int:
    try:
        return size_bytes(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _str_list(value: Any) -> Any:
    # Distribution wants a list; a lone string is what people write for one item, so take it as that item.
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [go_str(value)]
    if isinstance(value, list):
        return [go_str(v) for v in value]
    return value


GoStr = Annotated[str, BeforeValidator(go_str)]
"""A string field: numbers and booleans are taken as the text the user wrote, as Go's decoder does."""
Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds: in YAML a Go duration ("5m", "1h30m") or integer nanoseconds; from Python code, a number of seconds."""
Size = Annotated[int, BeforeValidator(_size)]
"""Bytes, written as an integer or with a unit ("4MiB", "512M")."""
StrList = Annotated[list[str], BeforeValidator(_str_list)]
"""A list of strings; a single string counts as a one-item list."""


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, and a key left empty (null) means its default."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls(cls, data: Any) -> Any:
        # Go's decoder leaves a field at its zero value for `key:` with nothing after it; do the same.
        if data is None:
            return {}
        if isinstance(data, dict):
            # Unknown keys stay, whatever their value, so that they are reported.
            return {k: v for k, v in data.items() if v is not None or k not in cls.model_fields}
        return data


# --- hosts and URLs ---------------------------------------------------------------------------------------
_PORT = r"(?P<port>\d{1,5})"
_HOSTPORT = re.compile(rf"^(?:\[(?P<v6>[0-9A-Fa-f:.%\w]+)\]|(?P<host>[^\s:\[\]]*)):{_PORT}$")
_DNS_LABEL = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
_REGISTRY_HOST = re.compile(rf"^(?:{_DNS_LABEL}(?:\.{_DNS_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{{1,5}}))?$")

def split_listen_address(addr: str) -> tuple[str | None, int]:
    """A listen address as Go's net.Listen takes it: `":5000"` -> (None, 5000), `"127.0.0.1:5000"` ->
    ("127.0.0.1", 5000), `"[::1]:5000"` -> ("::1", 5000). (A URL host is split by k3s.endpoints.split_host_port.)

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


def _registry_host(value: Any) -> Any:
    if not isinstance(value, str):
        raise problem(f"expected a registry host such as 'docker.io' or '127.0.0.1:5000', got {show_value(value)}")
    try:
        return check_registry_host(value.strip())
    except ValueError:
        raise problem(
            f"expected a registry host such as 'docker.io' or '127.0.0.1:5000' (no scheme, no path), got {value!r}"
        ) from None


ReferenceHost = Annotated[str, BeforeValidator(_registry_host)]
"""A registry host as image references spell it (`docker.io`, `127.0.0.1:30500`), lower-cased."""


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
        return DOCKER_HUB
    return parts.netloc.rsplit("@", 1)[-1].lower()
