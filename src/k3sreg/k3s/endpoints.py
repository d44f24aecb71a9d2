"""Endpoint addresses as K3s normalises them (registries.yaml → hosts.toml).

K3s parses every `endpoint` entry and every mirror/config key with Go's `net/url` after prefixing `//` when
there is no `://`, picks a default scheme (http only for localhost/loopback with a port other than 443),
replaces `docker.io` by `registry-1.docker.io`, and turns an empty, `/` or `/v2` path into `/v2`; any other path
is kept verbatim and marked `override_path`. This module reproduces that, including the failure cases in which
K3s skips the endpoint, without depending on anything but the standard library.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_HOST = "registry-1.docker.io"

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
# Characters Go's url package accepts unescaped in a host (letters, digits and these).
_HOST_OK = set("-_.~!$&'()*+,;=:[]<>\"")


class EndpointError(ValueError):
    """An address Go's url.Parse rejects: K3s logs it and skips the endpoint (or the whole key)."""


@dataclass(frozen=True)
class ParsedURL:
    """The parts of a URL as Go's url.Parse splits them (path kept as written)."""

    scheme: str
    userinfo: str
    host: str
    path: str
    query: str

    def string(self) -> str:
        """Go's url.URL.String() for the URLs K3s builds."""
        out = f"{self.scheme}:" if self.scheme else ""
        if self.scheme or self.host or self.userinfo:
            out += "//"
            if self.userinfo:
                out += self.userinfo + "@"
            out += self.host
        out += self.path
        if self.query:
            out += "?" + self.query
        return out


@dataclass(frozen=True)
class Endpoint:
    """A normalised endpoint: the registry name its config is looked up by, its URL and override flag."""

    registry: str
    url: str
    override_path: bool
    scheme: str
    host: str


def _split_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise EndpointError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def _valid_optional_port(port: str) -> bool:
    if port == "":
        return True
    if not port.startswith(":"):
        return False
    return all(c.isdigit() for c in port[1:]) and port[1:].isascii()


def _check_host(host: str) -> None:
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise EndpointError("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise EndpointError(f"invalid port {host[end + 1:]!r} after host")
    else:
        colon = host.rfind(":")
        if colon >= 0 and not _valid_optional_port(host[colon:]):
            raise EndpointError(f"invalid port {host[colon:]!r} after host")
    i = 0
    while i < len(host):
        c = host[i]
        if c == "%":
            if not re.match(r"%[0-9A-Fa-f]{2}", host[i : i + 3]):
                raise EndpointError(f"invalid URL escape {host[i:i + 3]!r}")
            i += 3
            continue
        if ord(c) < 0x80 and not (c.isalnum() or c in _HOST_OK):
            raise EndpointError(f"invalid character {c!r} in host name")
        i += 1


def parse_url(raw: str) -> ParsedURL:
    """Split `raw` like Go's url.Parse (the subset K3s relies on); raise EndpointError where Go fails."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise EndpointError("invalid control character in URL")
    raw = raw.split("#", 1)[0]
    scheme, rest = _split_scheme(raw)
    scheme = scheme.lower()
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    userinfo = host = ""
    if rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        path = slash + tail
        if "@" in authority:
            userinfo, _, authority = authority.rpartition("@")
        _check_host(authority)
        host = authority
    else:
        path = rest
        if not scheme and ":" in path.split("/", 1)[0]:
            raise EndpointError("first path segment in URL cannot contain colon")
    if "%" in path and re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise EndpointError("invalid URL escape in path")
    return ParsedURL(scheme, userinfo, host, path, query)


def split_host_port(host: str) -> tuple[str, str]:
    """(hostname, port) of a URL host, brackets removed from IPv6 literals; port "" when absent."""
    if host.startswith("["):
        end = host.rfind("]")
        name = host[1:end] if end > 0 else host[1:]
        rest = host[end + 1 :] if end > 0 else ""
        return name, rest[1:] if rest.startswith(":") else ""
    colon = host.rfind(":")
    if colon >= 0 and _valid_optional_port(host[colon:]):
        return host[:colon], host[colon + 1 :]
    return host, ""


def is_localhost(host: str) -> bool:
    """containerd's docker.IsLocalhost: `localhost` or a loopback IP, with or without a port."""
    name = host
    if host.startswith("[") and "]:" in host:
        name = host[1 : host.index("]:")]
    elif host.count(":") == 1:
        name = host.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def is_ipv6_literal(host: str) -> bool:
    """Whether a URL host is a bracketed IPv6 address."""
    return host.startswith("[")


def default_host(registry: str) -> str:
    """containerd's DefaultHost: `docker.io` is served by `registry-1.docker.io`, everything else by itself."""
    return DOCKER_HUB_HOST if registry == DOCKER_HUB else registry


def normalize_endpoint(address: str, mirror_addr: str = "") -> Endpoint:
    """K3s's normalizeEndpointAddress: the registry name, URL and override flag for one address.

    `mirror_addr` is the embedded mirror's `host:port` (it always gets https). Raises EndpointError where K3s
    would log "Ignoring invalid endpoint URL" and skip the address.
    """
    raw = address if "://" in address else "//" + address
    u = parse_url(raw)
    scheme = u.scheme
    if not scheme:
        _, port = split_host_port(u.host)
        scheme = "http" if is_localhost(u.host) and port not in ("", "443") and u.host != mirror_addr else "https"
    registry = u.host
    host = default_host(registry)
    if host == DOCKER_HUB_HOST:
        registry = DOCKER_HUB
    if u.path in ("", "/", "/v2"):
        parsed = ParsedURL(scheme, u.userinfo, host, "/v2", u.query)
        return Endpoint(registry, parsed.string(), False, scheme, host)
    parsed = ParsedURL(scheme, u.userinfo, host, u.path, u.query)
    return Endpoint(registry, parsed.string(), True, scheme, host)
