"""Which HTTP proxy an upstream request goes through: HTTP_PROXY, HTTPS_PROXY and NO_PROXY, read as Go reads them.

Docker Distribution honours these variables through Go's `http.ProxyFromEnvironment`, so a registry:2 behind a
corporate proxy is configured by its environment alone; k3sreg reads them the same way:

- `HTTPS_PROXY` for https URLs, `HTTP_PROXY` for http URLs; the upper-case name wins over the lower-case one.
  A value without a scheme means `http://`.
- `localhost` and loopback addresses never go through a proxy.
- `NO_PROXY` is a comma-separated list: `*` (nothing is proxied), an IP address, a CIDR block, or a host name
  that matches itself and its subdomains (`.example.com` matches subdomains only); an entry with a port matches
  only that port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from yarl import URL

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _first(env: Mapping[str, str], *names: str) -> str:
    for name in names:
        if env.get(name):
            return env[name]
    return ""


def _ip(host: str) -> _IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class _Exception:
    """One NO_PROXY entry."""

    network: _Network | None = None
    domain: str = ""
    subdomains_only: bool = False
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> _Exception | None:
        entry = entry.strip().lower()
        if not entry:
            return None
        try:
            return cls(network=ipaddress.ip_network(entry, strict=False))
        except ValueError:
            pass
        host, port = entry, None
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            host, _, rest = entry[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif entry.count(":") == 1:
            name, _, number = entry.partition(":")
            if number.isdigit():
                host, port = name, int(number)
        ip = _ip(host)
        if ip is not None:
            return cls(network=ipaddress.ip_network(ip), port=port)
        if host.startswith("*."):
            host = host[1:]
        return cls(domain=host.lstrip("."), subdomains_only=host.startswith("."), port=port)

    def matches(self, host: str, ip: _IPAddress | None, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip is not None and ip in self.network
        if host == self.domain:
            return not self.subdomains_only
        return host.endswith("." + self.domain)


@dataclass(frozen=True)
class ProxyEnv:
    """A snapshot of the proxy variables; `for_url` picks the proxy for one request."""

    http: str = ""
    https: str = ""
    everything_direct: bool = False
    exceptions: tuple[_Exception, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ProxyEnv:
        no_proxy = _first(env, "NO_PROXY", "no_proxy")
        entries = [e for e in (_Exception.parse(x) for x in no_proxy.split(",")) if e is not None]
        return cls(
            http=_first(env, "HTTP_PROXY", "http_proxy"),
            https=_first(env, "HTTPS_PROXY", "https_proxy"),
            everything_direct=any(x.strip() == "*" for x in no_proxy.split(",")),
            exceptions=tuple(entries),
        )

    def for_url(self, url: URL) -> str | None:
        """The proxy URL for `url`, or None to connect directly."""
        proxy = self.https if url.scheme == "https" else self.http if url.scheme == "http" else ""
        host = (url.raw_host or "").lower().rstrip(".")
        if not proxy or self.everything_direct or not host:
            return None
        ip = _ip(host)
        if host == "localhost" or host.endswith(".localhost") or (ip is not None and ip.is_loopback):
            return None
        port = url.port or (443 if url.scheme == "https" else 80)
        if any(e.matches(host, ip, port) for e in self.exceptions):
            return None
        return proxy if "://" in proxy else "http://" + proxy

    def describe(self, url: URL) -> str:
        """`via proxy http://host:port` (credentials hidden) or `direct`, for the start-up log."""
        proxy = self.for_url(url)
        if proxy is None:
            return "direct"
        return "via proxy " + str(URL(proxy).with_user(None))
