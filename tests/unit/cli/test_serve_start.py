"""`k3sreg serve` start-up: what the first line says about where the registry listens."""

from __future__ import annotations

import socket

import pytest

from k3sreg.cli.serve import listen_address
from k3sreg.config import parse_settings
from k3sreg.server.run import bind


def bound(addr: str) -> socket.socket:
    return bind(parse_settings({"version": "0.1", "storage": {"inmemory": {}}, "http": {"addr": addr}}, env={}))


def test_wildcard_address_says_every_interface() -> None:
    """`http.addr: :PORT` listens on all interfaces, and the start-up line says so next to the local URL."""
    with bound(":0") as sock:
        port = sock.getsockname()[1]
        where, note = listen_address(sock)
    assert where == f"127.0.0.1:{port}"
    assert "every" in note and "interface" in note and str(port) in note


def test_ipv4_wildcard_says_ipv4() -> None:
    """`0.0.0.0:PORT` is every IPv4 interface."""
    with bound("0.0.0.0:0") as sock:
        port = sock.getsockname()[1]
        assert listen_address(sock) == (f"127.0.0.1:{port}", f" and every IPv4 interface, port {port}")


@pytest.mark.parametrize(("addr", "shown"), [("127.0.0.1:0", "127.0.0.1"), ("[::1]:0", "[::1]")])
def test_a_specific_address_is_shown_as_it_is(addr: str, shown: str) -> None:
    """A loopback (or any specific) address is shown without a note."""
    with bound(addr) as sock:
        assert listen_address(sock) == (f"{shown}:{sock.getsockname()[1]}", "")
