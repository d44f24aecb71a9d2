"""TLS as containerd does it, and the words for a refused certificate (certificates made with auth/certs.py)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from k3sreg.auth import certs
from k3sreg.doctor import tlsprobe
from k3sreg.doctor.vantage import Local
from tests.peers.registry import write_self_signed

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def ca() -> certs.Issued:
    """The cluster CA."""
    return certs.make_ca()


def test_expired_certificate(ca: certs.Issued) -> None:
    """Past its end: expired, with the date, and the reissue command for the host."""
    cert = certs.issue_server(ca, ["registry.lan"]).cert
    what, fix = tlsprobe.refusal(cert, "registry.lan", "registry.lan:5000", [ca.cert], ("/ca.crt",), "x",
                                 now=NOW + datetime.timedelta(days=400))
    assert "expired on" in what and fix.startswith("issue a new one (`k3sreg certs issue -H registry.lan`)")


def test_not_yet_valid_points_at_the_clock(ca: certs.Issued) -> None:
    """Before its start: the node's clock."""
    cert = certs.issue_server(ca, ["registry.lan"]).cert
    what, fix = tlsprobe.refusal(cert, "registry.lan", "h", [ca.cert], (), "x", now=NOW - datetime.timedelta(days=1))
    assert "not valid before" in what and "clock" in fix


def test_a_name_or_ip_the_certificate_lacks(ca: certs.Issued) -> None:
    """The IP the endpoint uses is not among the SANs: named, with the names it has."""
    cert = certs.issue_server(ca, ["registry.lan", "10.0.0.6"]).cert
    what, fix = tlsprobe.refusal(cert, "10.0.0.5", "10.0.0.5:30500", [ca.cert], (), "x")
    assert what == "the certificate of 10.0.0.5:30500 is for registry.lan, 10.0.0.6, not 10.0.0.5"
    assert "k3sreg certs issue -H 10.0.0.5" in fix


def test_another_ca_of_the_same_name(ca: certs.Issued) -> None:
    """Issued by a CA of the same name but another key: said so, and which file to fix."""
    cert = certs.issue_server(ca, ["registry.lan"]).cert
    what, fix = tlsprobe.refusal(cert, "registry.lan", "h", [certs.make_ca().cert], ("/etc/ca.crt",), "x")
    assert "not by the CA in /etc/ca.crt" in what and "another key" in what and "/etc/ca.crt" in fix


def test_untrusted_ca_and_self_signed_without_ca_file(ca: certs.Issued, tmp_path: Path) -> None:
    """No ca_file: an unknown CA or a self-signed certificate asks for tls.ca_file."""
    cert = certs.issue_server(ca, ["registry.lan"]).cert
    what, fix = tlsprobe.refusal(cert, "registry.lan", "registry.lan:443", [], (), "x")
    assert "system CAs do not trust" in what and 'configs."registry.lan:443".tls.ca_file' in fix
    own, _ = write_self_signed(tmp_path, ("registry.lan",))
    what, _ = tlsprobe.refusal(x509.load_pem_x509_certificate(own.read_bytes()), "registry.lan", "h", [], (), "x")
    assert "self-signed" in what


def test_go_refusal_of_plain_http_is_not_an_http_answer() -> None:
    """An HTTP response is plain HTTP, unless it is Go's answer to HTTP on an HTTPS port."""
    assert tlsprobe.speaks_http(b"HTTP/1.1 200 OK\r\n")
    go = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    assert not tlsprobe.speaks_http(go)
    assert not tlsprobe.speaks_http(b"") and not tlsprobe.speaks_http(None) and not tlsprobe.speaks_http(b"\x15\x03")


def test_contexts_are_shared() -> None:
    """The same settings give the same context (the system CAs are loaded once)."""
    assert tlsprobe.context(None, True) is tlsprobe.context(None, True)
    assert tlsprobe.context(None, False).verify_mode == ssl.CERT_NONE


@pytest.fixture
async def tls_server(ca: certs.Issued, tmp_path: Path) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 with a certificate for 127.0.0.1, answering anything with an HTTP 200."""
    issued = certs.issue_server(ca, ["127.0.0.1"])
    certs.write_pair(issued, tmp_path / "c.pem", tmp_path / "k.pem")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(100)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=ctx)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def test_handshake_verified_refused_and_plain(tls_server: int, ca: certs.Issued) -> None:
    """With the CA the handshake verifies and hands back the certificate; without it the certificate is
    refused; a plain GET gets no HTTP answer from a TLS port."""
    pem = certs.cert_pem(ca.cert)
    ok = await tlsprobe.handshake(Local(), "127.0.0.1", tls_server, tlsprobe.context(pem, True), 3)
    assert ok.kind == "ok" and ok.cert is not None and "127.0.0.1" in tlsprobe.describe_cert(ok.cert)
    refused = await tlsprobe.handshake(Local(), "127.0.0.1", tls_server, tlsprobe.context(None, True), 3)
    assert refused.kind == "verify"
    answer = await tlsprobe.plain_answer(Local(), "127.0.0.1", tls_server, "127.0.0.1", "/v2/", 3)
    assert not tlsprobe.speaks_http(answer)
