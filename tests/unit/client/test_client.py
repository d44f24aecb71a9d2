"""Pure parts of the registry client: URLs, credentials, TLS settings, and reading what registries answer."""

from __future__ import annotations

import errno
import ssl
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest

from k3sreg.client.answers import (
    content_range,
    describe_failure,
    retry_after_seconds,
    tag_page,
)
from k3sreg.client.auth import basic_authorization
from k3sreg.client.registry import RegistryClient
from k3sreg.client.session import tls_context
from k3sreg.config.upstreams import UpstreamSettings
from k3sreg.errors import ConfigError


def settings(**extra: object) -> UpstreamSettings:
    """Settings for a made-up upstream."""
    return UpstreamSettings.model_validate({"name": "docker.io", "url": "https://registry.example:8443/", **extra})


def test_request_urls_use_the_upstream_name() -> None:
    """URLs keep the upstream's base and apply the library/ rule."""
    client = RegistryClient(settings())
    assert (
        str(client._url("nginx", "manifests", "1.27"))
        == "https://registry.example:8443/v2/library/nginx/manifests/1.27"
    )
    base = RegistryClient(settings(url="http://127.0.0.1:5000/mirror"))
    assert str(base._url("a/b", "blobs", "sha256:00")) == "http://127.0.0.1:5000/mirror/v2/a/b/blobs/sha256:00"


def test_credentials_in_the_url_are_used_and_hidden() -> None:
    """user:password@ in the URL become the credentials and disappear from the base URL."""
    client = RegistryClient(settings(url="https://bob:hunter2@registry.example"))
    assert str(client._url("a/b", "manifests", "1")) == "https://registry.example/v2/a/b/manifests/1"
    assert "hunter2" not in client._where("a")
    assert client.transport.auth._basic == basic_authorization("bob", "hunter2")


def test_unreadable_tls_files_are_a_config_error(tmp_path: Path) -> None:
    """A CA path that cannot be read is reported as a ConfigError naming the upstream's tls key."""
    with pytest.raises(ConfigError, match=r"upstreams\[docker.io\]\.tls"):
        RegistryClient(settings(tls={"ca": str(tmp_path / "missing.pem")}))


def test_tls_settings_become_an_ssl_context() -> None:
    """No tls keys keep the system defaults; skip verify turns host and chain checks off."""
    assert tls_context(settings()) is True
    context = tls_context(settings(tls={"insecureskipverify": True}))
    assert isinstance(context, ssl.SSLContext)
    assert (context.check_hostname, context.verify_mode) == (False, ssl.CERT_NONE)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"name": "a", "tags": ["1", "2"]}', ["1", "2"]),
        (b'{"name": "a", "tags": null}', []),
        (b'{"name": "a"}', []),
        (b'{"tags": [1]}', None),
        (b'["1"]', None),
        (b"<html>", None),
    ],
)
def test_tag_page_reads_only_a_list_of_strings(body: bytes, expected: list[str] | None) -> None:
    """An upstream tags/list page yields its tags; null means none; anything else is refused."""
    assert tag_page(body) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120),
        (" 5 ", 5),
        ("0", 1),
        (None, 10),
        ("soon", 10),
        ("Sun, 29 Nov 2026 12:00:30 GMT", 30),
        ("Sun, 29 Nov 2026 11:00:00 GMT", 1),
        ("999999", 3600),
    ],
)
def test_retry_after_seconds(value: str | None, expected: int) -> None:
    """Retry-After in seconds or as an HTTP date, 10 s when absent or unreadable, kept within 1 s .. 1 h."""
    now = 1_795_953_600.0  # Sun, 29 Nov 2026 12:00:00 GMT
    assert retry_after_seconds(value, now) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 100-199/1000", (100, 199, 1000)),
        ("bytes 0-0/*", (0, 0, None)),
        ("bytes */1000", None),
        ("items 1-2/3", None),
        ("", None),
    ],
)
def test_content_range(value: str, expected: tuple[int, int, int | None] | None) -> None:
    """The span of a 206 answer to a resumed download; anything else is not one."""
    assert content_range(value) == expected


def _connector_error(cls: type[aiohttp.ClientConnectorError], os_error: OSError) -> aiohttp.ClientConnectorError:
    key = SimpleNamespace(host="127.0.0.1", port=5999, ssl=True)
    return cls(key, os_error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (_connector_error(aiohttp.ClientConnectorError, ConnectionRefusedError(errno.ECONNREFUSED, "Connect call "
                          "failed ('127.0.0.1', 5999)")), "connection refused (127.0.0.1:5999)"),
        (_connector_error(aiohttp.ClientConnectorError, OSError("Multiple exceptions: x, y")),
         "Multiple exceptions: x, y (127.0.0.1:5999)"),
        (_connector_error(aiohttp.ClientProxyConnectionError, ConnectionRefusedError(errno.ECONNREFUSED, "x")),
         "connection refused (the proxy 127.0.0.1:5999)"),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), "no data for 5 s"),
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), "no connection within 5 s"),
        (aiohttp.ServerDisconnectedError(), "the upstream closed the connection"),
    ],
)
def test_failures_are_described_without_aiohttp_internals(exc: BaseException, expected: str) -> None:
    """Connection failures read as the cause and the address: no `ssl:default`, no `Connect call failed`."""
    assert str(exc) != expected
    assert describe_failure(exc, 5.0) == expected
