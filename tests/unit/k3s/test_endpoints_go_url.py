"""Endpoint URLs exactly as Go's net/url parses and prints them inside K3s's normalizeEndpointAddress.

Expected values were produced by Go 1.19's net/url (url.Parse, URL.Port, URL.String) running K3s's
normalisation steps, for inputs where a simpler split would differ: fragments, a bare `?`, paths Go
re-escapes, %-escapes in hosts, authority-less paths, opaque URLs and IPv6 zones.
"""

from __future__ import annotations

import tomllib

import pytest

from k3sreg.k3s.decode import load_registries
from k3sreg.k3s.endpoints import EndpointError, is_localhost, normalize_endpoint
from k3sreg.k3s.render import render_hosts
from k3sreg.k3s.rewrites import as_containerd_reads, check_rewrites


@pytest.mark.parametrize(
    ("address", "registry", "url", "override"),
    [
        ("https://h/v2#frag", "h", "https://h/v2#frag", False),
        ("https://h/v2?", "h", "https://h/v2?", False),
        ("h/v2?x#y", "h", "https://h/v2?x#y", False),
        ("/foo", "", "https://///foo", True),
        ("https:/a://b", "", "https:/a://b", True),
        ("https:x://y", "", "https:x://y", False),
        ("h/a b", "h", "https://h/a%20b", True),
        ("h/é", "h", "https://h/%C3%A9", True),
        ("hé.com", "hé.com", "https://h%C3%A9.com/v2", False),
        ("h%C3%A9.com", "hé.com", "https://h%C3%A9.com/v2", False),
        ("https://h/%76%32", "h", "https://h/%76%32", False),
        ("[::1%25lo]:5000", "[::1%lo]:5000", "https://[::1%25lo]:5000/v2", False),
        ("https://u:p:q@h/v2", "h", "https://u:p%3Aq@h/v2", False),
        ("@h", "h", "https://@h/v2", False),
        ('h/"q', "h", "https://h/%22q", True),
        ("h/a\\b", "h", "https://h/a%5Cb", True),
        ("https://h/{x}", "h", "https://h/%7Bx%7D", True),
        ("https://h#a b", "h", "https://h/v2#a%20b", False),
        ("http://?", "", "http:///v2?", False),
    ],
)
def test_url_text_matches_go(address: str, registry: str, url: str, override: bool) -> None:
    """The config lookup name, URL text and override flag are Go's, byte for byte."""
    ep = normalize_endpoint(address, "127.0.0.1:6443")
    assert (ep.registry, ep.url, ep.override_path) == (registry, url, override)


@pytest.mark.parametrize("bad", ["h%41.com", "https://h/v2#%zz", "https://h/%2", "https://u v@h", "h:5000x"])
def test_go_parse_errors(bad: str) -> None:
    """Addresses Go's url.Parse rejects (ASCII %-escape in a host, bad escapes, bad userinfo) are skipped."""
    with pytest.raises(EndpointError):
        normalize_endpoint(bad)


def test_ipv6_zone_is_not_loopback() -> None:
    """Go's net.ParseIP takes no zone, so `[::1%lo]` is not localhost (https), unlike Python's ipaddress."""
    assert not is_localhost("[::1%lo]:5000")
    assert is_localhost("[::1]:5000")


def test_rewrites_written_as_k3s_writes_them() -> None:
    """A rewrite K3s writes as valid TOML is written the same, so containerd reads `\\\\d` as `\\d`."""
    text = render_hosts(load_registries(
        "mirrors:\n  docker.io:\n    endpoint: [https://m.example.com]\n"
        "    rewrite:\n      '^a\\\\d/(.*)': 'b/$1'\n      '^c\\./(.*)': 'd/$1'\n"))["docker.io/hosts.toml"]
    assert '"^a\\\\d/(.*)" = "b/$1"' in text
    rewrite = tomllib.loads(text)["host"]["https://m.example.com/v2"]["rewrite"]
    assert rewrite == {"^a\\d/(.*)": "b/$1", "^c\\./(.*)": "d/$1"}


def test_rewrite_finding_says_what_containerd_reads() -> None:
    """A backslash that survives as valid TOML is reported with the value containerd reads instead."""
    assert as_containerd_reads("a\\\\d") == "a\\d"
    assert as_containerd_reads("a\\.") is None
    assert as_containerd_reads('a"b') is None
    messages = [p.message for p in check_rewrites({"^a\\\\d/(.*)": "b/$1", "^c\\.(.*)": "d/$1"})
                if p.code == "rewrite-breaks-toml"]
    assert any("reads it as `^a\\d/(.*)`" in m for m in messages)
    assert any("invalid TOML" in m for m in messages)
