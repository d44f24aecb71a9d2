"""Endpoint checks that need no network: names as the node resolved them, credentials in containerd's form;
and the routing of HTTP through a vantage point, against the pinned aiohttp."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator

import aiohttp
import pytest

from k3sreg.doctor.hosts import Endpoint
from k3sreg.doctor.netchecks import check_dns, username_password
from k3sreg.doctor.vantage import Local, _Routed
from k3sreg.k3s.model import AuthConfig
from tests.unit.doctor.facts import facts


def ep(host: str) -> Endpoint:
    """An https endpoint for `host`."""
    return Endpoint("https", host, "/v2")


def test_ip_endpoints_need_no_lookup() -> None:
    """An IP literal passes dns at once."""
    assert check_dns(ep("10.0.0.5:30500"), facts()).status == "pass"


def test_a_name_that_does_not_resolve_on_the_node() -> None:
    """Not found: fail, with the /etc/hosts line to add (loopback for a .localhost name)."""
    found = check_dns(ep("registry.localhost:30500"), facts(names={"registry.localhost": None}))
    assert found.status == "fail" and "add `127.0.0.1 registry.localhost` to /etc/hosts" in found.fix
    found = check_dns(ep("registry.lan"), facts(names={"registry.lan": None}))
    assert found.status == "fail" and "/etc/hosts on every node" in found.fix


def test_registry_localhost_must_be_loopback() -> None:
    """registry.localhost resolving elsewhere fails; to 127.0.0.1 or ::1 it passes."""
    bad = check_dns(ep("registry.localhost:30500"), facts(names={"registry.localhost": ("10.0.0.5",)}))
    assert bad.status == "fail" and "not to loopback" in bad.seen
    good = check_dns(ep("registry.localhost:30500"), facts(names={"registry.localhost": ("127.0.0.1", "::1")}))
    assert good.status == "pass" and "127.0.0.1, ::1" in good.seen


def test_no_getent_on_the_node_is_a_warning() -> None:
    """Without getent the name is not checked, and the chain goes on."""
    f = facts()
    assert check_dns(ep("registry.lan"), f).status == "warn"


def test_credentials_from_username_password_or_auth() -> None:
    """containerd's `auth` (base64 user:password) counts like username and password; a token alone does not."""
    assert username_password(AuthConfig("u", "p")) == ("u", "p")
    assert username_password(AuthConfig(auth=base64.b64encode(b"robot:s3:cret").decode())) == ("robot", "s3:cret")
    assert username_password(AuthConfig(identity_token="t")) is None


@pytest.fixture
def web() -> Iterator[int]:
    """A plain HTTP server on 127.0.0.1 answering 200 to anything."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(self.headers.get("Host", "").encode()[:2])

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _ToLocal(Local):
    """A vantage point whose every host:port is the test server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.asked: list[tuple[str, int]] = []

    async def route(self, host: str, port: int) -> tuple[str, int]:
        self.asked.append((host, port))
        return "127.0.0.1", self.port


async def test_requests_to_ip_literals_go_through_the_route(web: int) -> None:
    """aiohttp asks the route even for an IP literal (which it would otherwise dial itself), and the Host header
    stays the URL's."""
    vantage = _ToLocal(web)
    async with aiohttp.ClientSession(connector=_Routed(vantage, force_close=True)) as session:
        async with session.get("http://192.0.2.7:5000/v2/") as response:
            assert response.status == 200 and await response.read() == b"19"
        async with session.get("http://registry.lan/v2/") as response:
            assert response.status == 200
    assert vantage.asked == [("192.0.2.7", 5000), ("registry.lan", 80)]
