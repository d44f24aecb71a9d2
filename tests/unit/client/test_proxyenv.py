"""HTTP_PROXY / HTTPS_PROXY / NO_PROXY are read as Go's http.ProxyFromEnvironment reads them."""

from __future__ import annotations

import pytest
from yarl import URL

from k3sreg.client.proxyenv import ProxyEnv

PROXIES = {"HTTP_PROXY": "http://plain:3128", "HTTPS_PROXY": "http://secure:3128"}


def proxy(url: str, **env: str) -> str | None:
    return ProxyEnv.from_env({**PROXIES, **env}).for_url(URL(url))


def test_scheme_picks_the_variable() -> None:
    """https URLs use HTTPS_PROXY, http URLs HTTP_PROXY."""
    assert proxy("https://registry-1.docker.io/v2/") == "http://secure:3128"
    assert proxy("http://mirror.example:5000/v2/") == "http://plain:3128"


def test_no_variables_means_direct() -> None:
    """Without proxy variables every request is direct."""
    assert ProxyEnv.from_env({}).for_url(URL("https://ghcr.io/v2/")) is None


def test_upper_case_wins_and_lower_case_works() -> None:
    """HTTPS_PROXY wins over https_proxy; https_proxy alone is used too."""
    env = ProxyEnv.from_env({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"})
    assert env.for_url(URL("https://quay.io/")) == "http://upper:1"
    assert ProxyEnv.from_env({"https_proxy": "http://lower:2"}).for_url(URL("https://quay.io/")) == "http://lower:2"


def test_value_without_scheme_is_http() -> None:
    """`HTTPS_PROXY=proxy:3128` means http://proxy:3128."""
    assert ProxyEnv.from_env({"HTTPS_PROXY": "proxy:3128"}).for_url(URL("https://gcr.io/")) == "http://proxy:3128"


@pytest.mark.parametrize("url", ["http://localhost:5000/v2/", "http://127.0.0.1:5000/", "http://[::1]:5000/",
                                 "http://127.8.9.10/", "http://registry.localhost/"])
def test_loopback_is_never_proxied(url: str) -> None:
    """localhost and loopback addresses always connect directly."""
    assert proxy(url) is None


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("*", "https://registry-1.docker.io/", True),
        ("docker.io", "https://registry-1.docker.io/", True),
        ("docker.io", "https://docker.io/", True),
        (".docker.io", "https://docker.io/", False),
        (".docker.io", "https://registry-1.docker.io/", True),
        ("*.docker.io", "https://auth.docker.io/", True),
        ("ker.io", "https://docker.io/", False),
        ("10.0.0.0/8", "http://10.1.2.3:5000/", True),
        ("10.0.0.0/8", "http://192.168.1.1:5000/", False),
        ("192.168.1.1", "http://192.168.1.1:5000/", True),
        ("mirror.local:5000", "http://mirror.local:5000/", True),
        ("mirror.local:5000", "http://mirror.local:5001/", False),
        ("quay.io, ghcr.io", "https://ghcr.io/", True),
        ("GHCR.IO", "https://ghcr.io/", True),
        ("[fd00::1]:443", "https://[fd00::1]/", True),
        ("", "https://ghcr.io/", False),
    ],
)
def test_no_proxy_entries(no_proxy: str, url: str, direct: bool) -> None:
    """NO_PROXY: `*`, domains with their subdomains, `.suffix`, IPs, CIDRs and host:port entries."""
    assert (proxy(url, NO_PROXY=no_proxy) is None) == direct


def test_describe_hides_proxy_credentials() -> None:
    """The start-up line names the proxy without its user and password."""
    env = ProxyEnv.from_env({"HTTPS_PROXY": "http://user:secret@proxy:3128"})
    assert env.describe(URL("https://ghcr.io")) == "via proxy http://proxy:3128"
    assert env.describe(URL("http://127.0.0.1:5000")) == "direct"
