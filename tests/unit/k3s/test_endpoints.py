"""Endpoint normalisation as K3s's normalizeEndpointAddress does it (cases from K3s's own table)."""

from __future__ import annotations

import pytest

from k3sreg.k3s.endpoints import EndpointError, is_localhost, normalize_endpoint, parse_url, split_host_port


@pytest.mark.parametrize(
    ("address", "url", "registry", "override"),
    [
        ("docker.io", "https://registry-1.docker.io/v2", "docker.io", False),
        ("registry-1.docker.io", "https://registry-1.docker.io/v2", "docker.io", False),
        ("https://r.example.com/prefix/v2", "https://r.example.com/prefix/v2", "r.example.com", True),
        ("r.example.com/prefix/v2", "https://r.example.com/prefix/v2", "r.example.com", True),
        ("registry.example.com/v2", "https://registry.example.com/v2", "registry.example.com", False),
        ("https://registry.example.com", "https://registry.example.com/v2", "registry.example.com", False),
        ("https://registry.example.com/", "https://registry.example.com/v2", "registry.example.com", False),
        ("registry.example.com", "https://registry.example.com/v2", "registry.example.com", False),
        ("registry.example.com:443", "https://registry.example.com:443/v2", "registry.example.com:443", False),
        ("registry.example.com:5000", "https://registry.example.com:5000/v2", "registry.example.com:5000", False),
        ("1.2.3.4", "https://1.2.3.4/v2", "1.2.3.4", False),
        ("1.2.3.4:443", "https://1.2.3.4:443/v2", "1.2.3.4:443", False),
        ("localhost:5000", "http://localhost:5000/v2", "localhost:5000", False),
        ("https://localhost:5000", "https://localhost:5000/v2", "localhost:5000", False),
        ("127.0.0.1:5000", "http://127.0.0.1:5000/v2", "127.0.0.1:5000", False),
        ("127.0.0.1:443", "https://127.0.0.1:443/v2", "127.0.0.1:443", False),
        ("localhost", "https://localhost/v2", "localhost", False),
        ("[::1]:5000", "http://[::1]:5000/v2", "[::1]:5000", False),
        ("HTTP://127.0.0.1:5000", "http://127.0.0.1:5000/v2", "127.0.0.1:5000", False),
        ("https://h/project/registry", "https://h/project/registry", "h", True),
        ("https://h/v2/", "https://h/v2/", "h", True),
    ],
)
def test_normalize_matches_k3s(address: str, url: str, registry: str, override: bool) -> None:
    """Each address normalises to K3s's URL, config lookup name and override flag."""
    ep = normalize_endpoint(address)
    assert (ep.url, ep.registry, ep.override_path) == (url, registry, override)


def test_embedded_mirror_address_stays_https() -> None:
    """The embedded mirror's own loopback address is https even with an odd port."""
    assert normalize_endpoint("127.0.0.1:6443", "127.0.0.1:6443").url == "https://127.0.0.1:6443/v2"
    assert normalize_endpoint("127.0.0.1:6443").url == "http://127.0.0.1:6443/v2"


@pytest.mark.parametrize("bad", ["http://host:port", "https://a b", "://x", "http://[::1", "h:5000x"])
def test_invalid_addresses_are_rejected_like_go(bad: str) -> None:
    """Addresses Go's url.Parse rejects raise EndpointError (K3s skips them)."""
    with pytest.raises(EndpointError):
        normalize_endpoint(bad)


def test_is_localhost_follows_containerd() -> None:
    """localhost and loopback IPs (v4, v6, v4-mapped) count, with or without a port; others do not."""
    for host in ("localhost", "localhost:5000", "127.0.0.1", "127.9.9.9:80", "[::1]:5000", "::1",
                 "[::ffff:127.0.0.1]:5000"):
        assert is_localhost(host), host
    for host in ("10.0.0.1:5000", "registry.local:5000", "localhost.example.com", "[::2]:1"):
        assert not is_localhost(host), host


def test_split_and_parse_helpers() -> None:
    """Host/port splitting handles IPv6 brackets; userinfo and query are separated like Go."""
    assert split_host_port("[::1]:5000") == ("::1", "5000")
    assert split_host_port("host") == ("host", "")
    u = parse_url("https://u:p@h:1/x?y=1#frag")
    assert (u.userinfo, u.host, u.path, u.query) == ("u:p", "h:1", "/x", "y=1")
