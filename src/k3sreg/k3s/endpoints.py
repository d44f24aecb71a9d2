"""Endpoint addresses as K3s normalises them (registries.yaml → hosts.toml).

K3s parses every `endpoint` entry and every mirror/config key with Go's `net/url` after prefixing `//` when
there is no `://`, picks a default scheme (http only for localhost/loopback with a port other than 443),
replaces `docker.io` by `registry-1.docker.io`, and turns an empty, `/` or `/v2` path into `/v2`; any other path
is kept and marked `override_path`. The URL text written to hosts.toml is Go's `URL.String()`, so this module
ports the parts of `net/url` it depends on: %-decoding of host and path, re-escaping (`/a b` → `/a%20b`),
fragments, a bare `?`, opaque and authority-less forms, and every parse error, after which K3s skips the
endpoint. Checked against Go's own net/url on some 6,000 addresses.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from k3sreg.oci.reference import DOCKER_HUB, DOCKER_HUB_HOST

# Go's net/url escaping modes (only those a parsed endpoint goes through).
_PATH, _HOST, _ZONE, _USERINFO, _FRAGMENT = "path", "host", "zone", "userinfo", "fragment"
_HOST_OK = frozenset(b"!$&'()*+,;=:[]<>\"")
_USERINFO_OK = frozenset(b"-._:~!$&'()*+,;=%@")


class EndpointError(ValueError):
    """An address Go's url.Parse rejects: K3s logs it and skips the endpoint (or the whole key)."""


def _should_escape(c: int, mode: str) -> bool:
    """Go's shouldEscape for one byte."""
    if 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A:
        return False
    if mode in (_HOST, _ZONE) and c in _HOST_OK:
        return False
    if c in b"-_.~":
        return False
    if c in b"$&+,/:;=?@":
        if mode == _PATH:
            return c == ord("?")
        if mode == _USERINFO:
            return c in b"@/?:"
        return mode != _FRAGMENT
    return not (mode == _FRAGMENT and c in b"!()*")


def _escape(value: bytes, mode: str) -> str:
    """Go's escape(): %XX (upper-case) for every byte the mode does not allow."""
    return "".join(f"%{c:02X}" if _should_escape(c, mode) else chr(c) for c in value)


def _is_hex(c: int) -> bool:
    return chr(c) in "0123456789abcdefABCDEF"


def _unescape(value: str, mode: str) -> bytes:
    """Go's unescape(): decode %XX, rejecting what Go rejects for the mode."""
    s = value.encode()
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == 0x25:  # %
            if i + 2 >= len(s) or not (_is_hex(s[i + 1]) and _is_hex(s[i + 2])):
                raise EndpointError(f"invalid URL escape {s[i:i + 3].decode(errors='replace')!r}")
            byte = int(s[i + 1:i + 3], 16)
            # In a host, %-encoding is only for non-ASCII bytes, and %25 (the IPv6 zone separator).
            if mode == _HOST and byte < 0x80 and s[i:i + 3] != b"%25":
                raise EndpointError(f"invalid URL escape {s[i:i + 3].decode()!r}")
            if mode == _ZONE and s[i:i + 3] != b"%25" and byte != 0x20 and _should_escape(byte, _HOST):
                raise EndpointError(f"invalid URL escape {s[i:i + 3].decode()!r}")
            out.append(byte)
            i += 3
            continue
        if mode in (_HOST, _ZONE) and c < 0x80 and _should_escape(c, mode):
            raise EndpointError(f"invalid character {chr(c)!r} in host name")
        out.append(c)
        i += 1
    return bytes(out)


def _valid_encoded(value: str, mode: str) -> bool:
    return all(c in b"!$&'()*+,;=:@[]%" or not _should_escape(c, mode) for c in value.encode())


def _escaped(raw: str, decoded: bytes, mode: str) -> str:
    """Go's EscapedPath/EscapedFragment: the text as written when it is a valid encoding, else re-escaped."""
    if raw and _valid_encoded(raw, mode):
        try:
            if _unescape(raw, mode) == decoded:
                return raw
        except EndpointError:
            pass
    return _escape(decoded, mode)


def _text(value: bytes) -> str:
    return value.decode(errors="surrogateescape")


@dataclass(frozen=True)
class ParsedURL:
    """A URL as Go's url.Parse splits it. `host` is decoded (what K3s compares and looks configs up by);
    `path` is the path as written, `decoded_path` Go's `URL.Path`; `query` is Go's RawQuery."""

    scheme: str
    userinfo: str
    host: str
    path: str
    query: str
    decoded_path: str = ""
    opaque: str = ""
    fragment: str = ""
    raw_fragment: str = ""
    force_query: bool = False
    omit_host: bool = False
    has_user: bool = False

    def with_path(self, decoded: str) -> ParsedURL:
        """The URL after `u.Path = decoded` (RawPath left as it was, as when K3s sets `/v2`)."""
        return replace(self, decoded_path=decoded)

    def string(self) -> str:
        """Go's url.URL.String()."""
        out = f"{self.scheme}:" if self.scheme else ""
        if self.opaque:
            out += self.opaque
        else:
            if (self.scheme or self.host or self.has_user) and not (
                    self.omit_host and not self.host and not self.has_user):
                if self.host or self.decoded_path or self.has_user:
                    out += "//"
                if self.has_user:
                    out += _userinfo_string(self.userinfo) + "@"
                out += _escape(self.host.encode(errors="surrogateescape"), _HOST)
            path = self.escaped_path()
            if path and not path.startswith("/") and self.host:
                out += "/"
            if not out and ":" in path.split("/", 1)[0]:
                out += "./"
            out += path
        if self.force_query or self.query:
            out += "?" + self.query
        if self.fragment:
            out += "#" + _escaped(self.raw_fragment, self.fragment.encode(errors="surrogateescape"), _FRAGMENT)
        return out

    def escaped_path(self) -> str:
        """Go's EscapedPath()."""
        decoded = self.decoded_path.encode(errors="surrogateescape")
        if self.decoded_path == "*" and not self.path:
            return "*"
        return _escaped(self.path, decoded, _PATH)


def _userinfo_string(userinfo: str) -> str:
    name, colon, password = userinfo.partition(":")
    out = _escape(_unescape(name, _USERINFO), _USERINFO)
    if colon:
        out += ":" + _escape(_unescape(password, _USERINFO), _USERINFO)
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


def _parse_host(host: str) -> str:
    """Go's parseHost: check the port, decode %-escapes (the IPv6 zone with its own rules)."""
    if host.startswith("["):
        end = host.rfind("]")
        if end < 0:
            raise EndpointError("missing ']' in host")
        if not _valid_optional_port(host[end + 1 :]):
            raise EndpointError(f"invalid port {host[end + 1:]!r} after host")
        zone = host.find("%25", 0, end)
        if zone >= 0:
            return _text(_unescape(host[:zone], _HOST) + _unescape(host[zone:end], _ZONE)
                         + _unescape(host[end:], _HOST))
    else:
        colon = host.rfind(":")
        if colon >= 0 and not _valid_optional_port(host[colon:]):
            raise EndpointError(f"invalid port {host[colon:]!r} after host")
    return _text(_unescape(host, _HOST))


def parse_url(raw: str) -> ParsedURL:
    """Split `raw` exactly like Go's url.Parse; raise EndpointError where Go fails."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise EndpointError("invalid control character in URL")
    raw, _, frag = raw.partition("#")
    scheme, rest = _split_scheme(raw)
    scheme = scheme.lower()
    force_query = rest.endswith("?") and rest.count("?") == 1
    if force_query:
        rest, query = rest[:-1], ""
    else:
        rest, _, query = rest.partition("?")
    fragment = _text(_unescape(frag, _FRAGMENT))
    raw_fragment = frag if _escape(fragment.encode(errors="surrogateescape"), _FRAGMENT) != frag else ""
    extra = ParsedURL("", "", "", "", query, force_query=force_query, fragment=fragment, raw_fragment=raw_fragment)
    if not rest.startswith("/"):
        if scheme:
            return replace(extra, scheme=scheme, opaque=rest)
        if ":" in rest.split("/", 1)[0]:
            raise EndpointError("first path segment in URL cannot contain colon")
    userinfo = host = ""
    has_user = omit_host = False
    # Without a scheme, "///x" is a path, not an empty authority.
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        if "@" in authority:
            userinfo, _, authority = authority.rpartition("@")
            if not all(c.isascii() and (c.isalnum() or ord(c) in _USERINFO_OK) for c in userinfo):
                raise EndpointError("net/url: invalid userinfo")
            _userinfo_string(userinfo)  # rejects bad escapes as Go does
            has_user = True
        host = _parse_host(authority)
    elif scheme and rest.startswith("/"):
        omit_host = True
    decoded_path = _text(_unescape(rest, _PATH))
    return replace(extra, scheme=scheme, userinfo=userinfo, host=host, path=rest, decoded_path=decoded_path,
                   omit_host=omit_host, has_user=has_user)


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
    if "%" in name:  # Go's net.ParseIP takes no IPv6 zone; Python's ipaddress would
        return False
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
    u = replace(u, scheme=scheme, host=host)
    # K3s switches on the decoded path; setting "/v2" keeps Go's RawPath, so `/%76%32` stays as written.
    if u.decoded_path in ("", "/", "/v2"):
        return Endpoint(registry, u.with_path("/v2").string(), False, scheme, host)
    return Endpoint(registry, u.string(), True, scheme, host)
