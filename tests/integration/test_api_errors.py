"""Every error answer is OCI JSON, and the server's log is for operators (issue 8 §3, §4).

A real ``k3sreg serve`` logging at debug level: malformed HTTP, TLS handshakes sent to the plain-HTTP port
(docker, skopeo and podman probe with one) and clients that go away each leave one debug line and no
traceback; the access log counts the body of blobs sent with sendfile.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from k3sreg.config import load_settings
from k3sreg.server.app import create_app
from tests.peers import api
from tests.peers.registry import K3sregServer

_LEVEL = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ", re.MULTILINE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sregServer]:
    """One k3sreg serve, logging at debug level with the access log on."""
    with K3sregServer(tmp_path_factory.mktemp("api-errors"), config={"log": {"level": "debug"}}) as reg:
        reg.wait_for("GET", "/v2/")  # the start-up probe's access line is written: tests read from here on
        yield reg


def log_after(server: K3sregServer, since: int, needle: str, timeout: float = 5.0) -> str:
    """The log written since offset `since`, once it contains `needle` (the server logs after answering)."""
    deadline = time.monotonic() + timeout
    while True:
        text = server.log_text()[since:]
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def above_debug(text: str) -> list[str]:
    """The lines of `text` logged at INFO or above."""
    return [line for line in text.splitlines() if (m := _LEVEL.match(line)) and m.group(1) != "DEBUG"]


def raw(port: int, data: bytes) -> bytes:
    """Send `data` as it is and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_tls_handshake_on_the_plain_port_is_quiet(server: K3sregServer) -> None:
    """A TLS ClientHello sent to the plain-HTTP port (the HTTPS probe of docker, skopeo, podman) leaves one debug
    line: no access line, nothing at INFO or above, no traceback."""
    since = len(server.log_text())
    ctx = ssl.create_default_context()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    text = log_after(server, since, "malformed request")
    assert text.count("malformed request") == 1, text
    assert not above_debug(text) and "Traceback" not in text, text


@pytest.mark.parametrize("request_bytes", [
    b"GARBAGE\r\n\r\n",
    b"GET /v2/a\x00b/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/" + b"a" * 10000 + b"/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 10000 + b"\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    b"PUT /v2/r/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
], ids=["request-line", "nul-in-path", "line-too-long", "header-too-long", "bad-header", "bad-length"])
def test_malformed_http_gets_oci_json_and_one_debug_line(server: K3sregServer, request_bytes: bytes) -> None:
    """Malformed HTTP (BadHttpMessage, LineTooLong, a NUL in the path) is 400 with an OCI error body, and is
    logged as one debug line: no traceback, no access line."""
    since = len(server.log_text())
    head, _, body = raw(server.port, request_bytes).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400", head
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    text = log_after(server, since, "malformed request")
    assert text.count("malformed request") == 1, text
    assert not above_debug(text) and "Traceback" not in text, text


def test_client_that_goes_away_mid_upload_leaves_no_traceback(server: K3sregServer) -> None:
    """A client that disconnects in the middle of a blob upload leaves one debug line, and no traceback."""
    since = len(server.log_text())
    d = "sha256:" + "0" * 64
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(f"POST /v2/gone/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 100000\r\n\r\nabc".encode())
        time.sleep(0.3)
    text = log_after(server, since, "went away")
    assert "went away" in text and "Traceback" not in text, text
    assert not [line for line in above_debug(text) if "aiohttp.access" not in line], text


def push_blob(base: str, repo: str, data: bytes) -> str:
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    reply = api.request("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={d}", body=data)
    assert reply.status == 201, reply
    return d


def test_client_that_goes_away_mid_download_leaves_no_traceback(server: K3sregServer) -> None:
    """A client that closes the connection while a blob is sent (sendfile) leaves no traceback."""
    d = push_blob(server.url, "gone/down", b"x" * (16 << 20))
    since = len(server.log_text())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(f"GET /v2/gone/down/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        sock.recv(4096)
    text = log_after(server, since, f"/v2/gone/down/blobs/{d}")
    assert f"/v2/gone/down/blobs/{d}" in text and "Traceback" not in text, text


def test_access_log_counts_the_body_sent_with_sendfile(server: K3sregServer) -> None:
    """The access log's size for a blob GET (sent with sendfile) includes the body, not only the headers."""
    size = 300 * 1024
    d = push_blob(server.url, "sizes/blob", b"s" * size)
    since = len(server.log_text())
    assert len(api.request("GET", f"{server.url}/v2/sizes/blob/blobs/{d}").body) == size
    text = log_after(server, since, f"GET /v2/sizes/blob/blobs/{d} ")
    logged = re.search(rf'"GET /v2/sizes/blob/blobs/{d} HTTP/1.1" 200 (\d+)', text)
    assert logged is not None, text
    assert size <= int(logged.group(1)) < size + 1024


@pytest.mark.parametrize("byte_range", ["bytes=5000-", "bytes=7-3", "bytes=junk", "bytes=0-1,3-4"])
def test_unsatisfiable_range_of_a_blob_is_oci_json(server: K3sregServer, byte_range: str) -> None:
    """A Range that is malformed or outside the blob is 416 RANGE_INVALID with an OCI body and the blob's size,
    for blobs sent with sendfile too."""
    d = push_blob(server.url, "ranges/blob", b"r" * 1000)
    reply = api.request("GET", f"{server.url}/v2/ranges/blob/blobs/{d}", headers={"Range": byte_range})
    assert reply.status == 416 and reply.headers["content-range"] == "bytes */1000"
    assert reply.json()["errors"][0]["code"] == "RANGE_INVALID"


@pytest.mark.parametrize(("method", "path", "status", "code"), [
    ("GET", "/nope", 404, "NAME_UNKNOWN"), ("GET", "/v3/", 404, "NAME_UNKNOWN"),
    ("POST", "/metrics", 405, "UNSUPPORTED"), ("DELETE", "/debug/health", 405, "UNSUPPORTED"),
])
def test_aiohttp_own_errors_are_oci_json(server: K3sregServer, method: str, path: str, status: int,
                                         code: str) -> None:
    """404 outside /v2/ and 405 of the other endpoints are OCI JSON errors, as every API error."""
    reply = api.request(method, server.url + path)
    assert reply.status == status and reply.headers["content-type"] == "application/json"
    assert reply.json()["errors"][0]["code"] == code


def test_storage_failure_is_oci_json(server: K3sregServer) -> None:
    """A storage operation that fails with an OSError (here a file where a directory must be) is 500 with an
    OCI error body that names no path."""
    repo = server.root / "docker/registry/v2/repositories/broken/repo"
    repo.mkdir(parents=True)
    (repo / "_uploads").write_text("not a directory")
    reply = api.request("POST", f"{server.url}/v2/broken/repo/blobs/uploads/")
    assert reply.status == 500 and reply.headers["content-type"] == "application/json"
    assert reply.json()["errors"][0]["code"] == "UNKNOWN" and str(server.root) not in reply.body.decode()


async def test_a_bug_in_a_handler_is_oci_json_and_logged_with_its_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An exception no handler meant to raise is a 500 UNKNOWN OCI error, logged with its traceback."""
    cfg = tmp_path / "config.yml"
    cfg.write_text(yaml.safe_dump({"version": 0.1, "storage": {"filesystem": {"rootdirectory": str(tmp_path)}}}))
    app = create_app(load_settings(cfg, env={}))

    async def bug(request: web.Request) -> web.StreamResponse:
        raise KeyError("a bug")

    app.router.add_get("/test-only/bug", bug)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{server.port}/test-only/bug") as resp:
            assert resp.status == 500 and resp.content_type == "application/json"
            assert (await resp.json())["errors"][0]["code"] == "UNKNOWN"
    finally:
        await server.close()
    records = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert records and "a bug" in str(records[0].exc_info[1]), caplog.text  # type: ignore[index]
